//! The log of an application that a process application follows: its
//! recorder when it runs here, or its log served over HTTP when it runs in
//! another process with a store of its own.

use crate::{AnyRecorder, AppName, Notification, NotificationSource, Result};

/// Where a followed application's log is read from.
#[derive(Clone, Debug)]
pub(crate) enum UpstreamLog {
    /// In this runner's store.
    Local(AnyRecorder),
    /// Served by another process.
    #[cfg(feature = "http")]
    Http(crate::http::HttpLog),
}

/// Calls the same method on whichever log is inside.
macro_rules! dispatch {
    ($self:ident, $log:ident => $call:expr) => {
        match $self {
            UpstreamLog::Local($log) => $call,
            #[cfg(feature = "http")]
            UpstreamLog::Http($log) => $call,
        }
    };
}

impl NotificationSource for UpstreamLog {
    fn app(&self) -> &AppName {
        dispatch!(self, log => log.app())
    }

    fn partitions(&self) -> u32 {
        dispatch!(self, log => log.partitions())
    }

    async fn select_notifications(&self, partition: u32, start: u64, limit: usize) -> Result<Vec<Notification>> {
        dispatch!(self, log => log.select_notifications(partition, start, limit).await)
    }

    async fn max_notification_id(&self, partition: u32) -> Result<u64> {
        dispatch!(self, log => log.max_notification_id(partition).await)
    }
}
