//! Notification logs: an application's events as linked sections, and a
//! reader that follows them in order.
//!
//! Section ids name the first and last notification ids a section may hold
//! (`"1,10"`, `"11,20"`). Sections are aligned to the log's fixed section
//! size; `"current"` is the section holding the newest notification. Every
//! section but the first links to its previous one; every section but the
//! current one links to its next. The same sections can later be served
//! over HTTP so that applications in different databases follow each other.
//!
//! Reading a log needs no write methods: [`NotificationSource`] is what a
//! reader needs, implemented by every local recorder and by a log read over
//! HTTP.

use std::collections::VecDeque;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::store::DEFAULT_PARTITION;
use crate::{AppName, Error, Notification, Result};

/// An application's notification log, read-only: what a follower or a log
/// server reads. Every [`Recorder`](crate::Recorder) is one; so is a log
/// read from another process over HTTP.
pub trait NotificationSource: Clone + Send + Sync + 'static {
    /// The application whose log this is.
    fn app(&self) -> &AppName;

    /// How many partitions the log has (1 unless it was opened with more:
    /// [`Store::partitioned_recorder`](crate::Store::partitioned_recorder)).
    fn partitions(&self) -> u32;

    /// Up to `limit` notifications of `partition` from id `start` on, in id
    /// order.
    fn select_notifications(
        &self,
        partition: u32,
        start: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Notification>>> + Send;

    /// The highest notification id in `partition` (0 for an empty log).
    fn max_notification_id(&self, partition: u32) -> impl Future<Output = Result<u64>> + Send;
}

/// Notifications per section unless chosen otherwise.
pub const DEFAULT_SECTION_SIZE: u64 = 100;
/// The most notifications a section request may span unless chosen otherwise.
pub const DEFAULT_MAX_SECTION_SIZE: u64 = 1000;
/// The largest notification id a log can hold: the stores keep ids as
/// signed 64-bit integers.
pub const MAX_NOTIFICATION_ID: u64 = i64::MAX as u64;

/// One section of a notification log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// `"first,last"`: the ids this section may hold.
    pub id: String,
    /// The notifications, in id order; fewer than the section size only in
    /// the current section.
    pub items: Vec<Notification>,
    /// The section before this one; `None` for the first.
    pub previous_id: Option<String>,
    /// The section after this one; `None` for the current section.
    pub next_id: Option<String>,
}

/// A section id: `first..=last`, both at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SectionId {
    first: u64,
    last: u64,
}

impl SectionId {
    fn parse(id: &str, max_span: u64) -> Result<Self> {
        let malformed = |reason: String| Error::SectionId {
            id: id.to_owned(),
            reason,
        };
        let (first, last) = id
            .split_once(',')
            .ok_or_else(|| malformed("expected `current` or `first,last`, such as `1,10`".to_owned()))?;
        let number = |text: &str, which: &str| {
            text.trim()
                .parse::<u64>()
                .map_err(|_| malformed(format!("the {which} id `{text}` is not a whole number")))
        };
        let (first, last) = (number(first, "first")?, number(last, "last")?);
        if first == 0 {
            return Err(malformed("notification ids start at 1".to_owned()));
        }
        if last > MAX_NOTIFICATION_ID {
            return Err(malformed(format!("notification ids end at {MAX_NOTIFICATION_ID}")));
        }
        if last < first {
            return Err(malformed(format!("the last id {last} is before the first id {first}")));
        }
        if last - first >= max_span {
            return Err(malformed(format!("a section spans at most {max_span} notifications")));
        }
        Ok(Self { first, last })
    }

    fn render(self) -> String {
        format!("{},{}", self.first, self.last)
    }
}

/// An application's events as a log of linked sections.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use eventsourcing::{AppName, NotificationLog, Store};
///
/// let recorder = Store::open("memory:").await?.recorder(&AppName::new("dogs")?).await?;
/// let log = NotificationLog::new(recorder).with_section_size(10)?;
/// let section = log.section("current").await?;
/// assert_eq!(section.id, "1,10");
/// assert!(section.items.is_empty());
/// assert_eq!((section.previous_id, section.next_id), (None, None));
/// assert!(log.section("10,1").await.is_err());
/// # Ok::<(), eventsourcing::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct NotificationLog<R> {
    recorder: R,
    partition: u32,
    section_size: u64,
    max_section_size: u64,
}

impl<R: NotificationSource> NotificationLog<R> {
    /// The log of the application `recorder` keeps, with sections of
    /// [`DEFAULT_SECTION_SIZE`].
    pub fn new(recorder: R) -> Self {
        Self {
            recorder,
            partition: DEFAULT_PARTITION,
            section_size: DEFAULT_SECTION_SIZE,
            max_section_size: DEFAULT_MAX_SECTION_SIZE.max(DEFAULT_SECTION_SIZE),
        }
    }

    /// Sets the section size (at least 1, at most the maximum section size).
    pub fn with_section_size(mut self, size: u64) -> Result<Self> {
        if size == 0 || size > self.max_section_size {
            return Err(self.invalid_size(size));
        }
        self.section_size = size;
        Ok(self)
    }

    /// Reads partition `partition` of the log (partition 0 unless chosen
    /// otherwise).
    ///
    /// Fails with [`Error::UnknownPartition`] if the log has no such
    /// partition.
    pub fn with_partition(mut self, partition: u32) -> Result<Self> {
        let partitions = self.recorder.partitions();
        if partition >= partitions {
            return Err(Error::UnknownPartition {
                app: self.recorder.app().to_string(),
                partition,
                partitions,
            });
        }
        self.partition = partition;
        Ok(self)
    }

    /// The partition this log reads.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Sets the widest span a section request may ask for (at least the
    /// section size); wider requests such as `"1,100000000"` are rejected.
    pub fn with_max_section_size(mut self, max: u64) -> Result<Self> {
        if max < self.section_size {
            return Err(Error::InvalidWrite {
                app: self.recorder.app().to_string(),
                reason: format!(
                    "maximum section size {max} is below the section size {}",
                    self.section_size
                ),
            });
        }
        self.max_section_size = max;
        Ok(self)
    }

    fn invalid_size(&self, size: u64) -> Error {
        Error::InvalidWrite {
            app: self.recorder.app().to_string(),
            reason: format!("section size {size} is not between 1 and {}", self.max_section_size),
        }
    }

    /// The fixed number of notifications per section.
    pub fn section_size(&self) -> u64 {
        self.section_size
    }

    /// The recorder this log reads from.
    pub fn recorder(&self) -> &R {
        &self.recorder
    }

    /// The section `"current"` or `"first,last"`. A request is answered with
    /// the aligned section holding `first`, so `"1,1000"` with a section size
    /// of 10 gives section `"1,10"`.
    pub async fn section(&self, id: &str) -> Result<Section> {
        let max_id = self.recorder.max_notification_id(self.partition).await?;
        let first = if id == "current" {
            max_id.saturating_sub(1) / self.section_size * self.section_size + 1
        } else {
            let requested = SectionId::parse(id, self.max_section_size)?;
            (requested.first - 1) / self.section_size * self.section_size + 1
        };
        // Aligned sections never pass the largest id, however large the
        // section size: the last one is cut short there.
        let last = first
            .checked_add(self.section_size - 1)
            .map_or(MAX_NOTIFICATION_ID, |last| last.min(MAX_NOTIFICATION_ID));
        let section = SectionId { first, last };
        let items = self
            .recorder
            .select_notifications(
                self.partition,
                first,
                usize::try_from(self.section_size).unwrap_or(usize::MAX),
            )
            .await?;
        let previous_id = (first > 1).then(|| {
            SectionId {
                first: first - self.section_size,
                last: first - 1,
            }
            .render()
        });
        // Only a section with a newer notification after it links to the
        // next: the current section (holding the newest id, even when
        // full) has none, and gains one when a later notification lands.
        let newest = max_id.max(items.last().map_or(0, |n| n.id));
        let next_id = (section.last < newest).then(|| {
            SectionId {
                first: section.last + 1,
                last: section.last.saturating_add(self.section_size).min(MAX_NOTIFICATION_ID),
            }
            .render()
        });
        Ok(Section {
            id: section.render(),
            items,
            previous_id,
            next_id,
        })
    }

    /// A reader that starts at the beginning of this log.
    pub fn reader(self) -> LogReader<R> {
        LogReader::new(self)
    }
}

/// Follows a notification log in id order and remembers its position.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use eventsourcing::{AppName, NotificationLog, Store};
///
/// let recorder = Store::open("memory:").await?.recorder(&AppName::new("dogs")?).await?;
/// let mut reader = NotificationLog::new(recorder).reader();
/// reader.seek(0)?;
/// assert!(reader.next().await?.is_none()); // nothing recorded yet
/// assert_eq!(reader.position(), 0);
/// # Ok::<(), eventsourcing::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct LogReader<R> {
    log: NotificationLog<R>,
    position: u64,
    buffer: VecDeque<Notification>,
}

impl<R: NotificationSource> LogReader<R> {
    /// A reader at position 0, before the first notification.
    pub fn new(log: NotificationLog<R>) -> Self {
        Self {
            log,
            position: 0,
            buffer: VecDeque::new(),
        }
    }

    /// Moves the reader so that the next notification it yields is the one
    /// after `position`.
    ///
    /// Fails with [`Error::LogPosition`] past [`MAX_NOTIFICATION_ID`].
    pub fn seek(&mut self, position: u64) -> Result<()> {
        if position > MAX_NOTIFICATION_ID {
            return Err(Error::LogPosition {
                app: self.log.recorder.app().to_string(),
                partition: self.log.partition,
                position,
                max: MAX_NOTIFICATION_ID,
            });
        }
        self.position = position;
        self.buffer.clear();
        Ok(())
    }

    /// The id of the last notification yielded (or sought to).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next notification, or `None` when the reader has caught up with
    /// the log. Calling again later yields notifications recorded since.
    ///
    /// Fails with [`Error::LogGap`] if the log skips an id.
    pub async fn next(&mut self) -> Result<Option<Notification>> {
        if self.buffer.is_empty() {
            // The rest of the section holding the next id, read directly:
            // a reader needs the items, not the links a section computes.
            let size = self.log.section_size;
            let last = (self.position / size * size).saturating_add(size);
            let limit = usize::try_from(last - self.position).unwrap_or(usize::MAX);
            if self.position == MAX_NOTIFICATION_ID {
                return Ok(None);
            }
            let items = self
                .log
                .recorder
                .select_notifications(self.log.partition, self.position + 1, limit)
                .await?;
            self.buffer.extend(items);
        }
        let Some(notification) = self.buffer.pop_front() else {
            return Ok(None);
        };
        if notification.id != self.position + 1 {
            self.buffer.clear();
            return Err(Error::LogGap {
                app: self.log.recorder.app().to_string(),
                partition: self.log.partition,
                position: self.position,
                found: notification.id,
            });
        }
        self.position = notification.id;
        Ok(Some(notification))
    }

    /// Every notification after the position, up to the end of the log as
    /// it is now.
    pub async fn read_to_end(&mut self) -> Result<Vec<Notification>> {
        let mut notifications = Vec::new();
        while let Some(notification) = self.next().await? {
            notifications.push(notification);
        }
        Ok(notifications)
    }
}
