//! Waking the followers of a log that another process serves: a long poll
//! per partition, so that they read when the log grows instead of polling
//! it tightly.

use std::time::Duration;

use super::Prompts;
use crate::NotificationSource;
use crate::http::HttpLog;

/// How long one long poll asks the server to wait (it may cap it).
const LONG_POLL: Duration = Duration::from_secs(25);

/// The first pause after a failed long poll; it doubles up to the last.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Waits on `partition` of `log` for ever, waking its followers each time
/// it grows. A server that cannot be reached is asked again after a pause;
/// the followers' own reads say what is wrong.
pub(super) async fn wake_on_growth(log: HttpLog, partition: u32, prompts: Prompts) {
    let mut after = 0;
    let mut pause = FIRST_PAUSE;
    loop {
        match log.wait_for_notifications(partition, after, LONG_POLL).await {
            Ok(head) => {
                pause = FIRST_PAUSE;
                if head > after {
                    prompts.wake_followers(log.app().as_str(), partition);
                }
                after = head;
            }
            Err(error) => {
                tracing::debug!(app = %log.app(), partition, %error, "long poll failed; asking again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}
