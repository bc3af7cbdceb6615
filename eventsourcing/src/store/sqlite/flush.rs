//! Durable commits off the writer's path. With `synchronous=FULL`, SQLite
//! waits for the disk inside `COMMIT`, and the single writer can do nothing
//! else meanwhile: that wait was a third of its time. The writer connection
//! commits with `synchronous=NORMAL` instead (the transaction is in the
//! write-ahead log, not yet on disk) and goes on to the next group, while a
//! thread of its own flushes the log (`fdatasync`) and only then answers
//! the group's writers and keeps their notifications for followers. One
//! flush serves every commit made before it began.
//!
//! A commit becomes visible to other connections before it is flushed, so
//! every read from the file waits for a flush that began after the read
//! ended: nothing this store hands out can be lost to a power failure, even
//! a commit another process made. With nothing left to flush, that flush
//! costs a system call. The log is append-only and checksummed frame by
//! frame, so a flush that a power failure interrupts keeps a prefix of the
//! commits, never a later one without an earlier.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// What a flush answers: shared by everyone it serves.
pub(super) type Flushed = Result<(), Arc<std::io::Error>>;

/// Work waiting for the next flush to end.
type AfterFlush = Box<dyn FnOnce(Flushed) + Send>;

/// Flushes one SQLite file's write-ahead log on a thread of its own.
#[derive(Debug)]
pub(super) struct Flusher {
    state: Arc<State>,
}

struct State {
    /// The file's write-ahead log (`PATH-wal`).
    wal: PathBuf,
    waiting: Mutex<Waiting>,
    wake: Condvar,
    /// Tests hold flushes back, to see what waits for them.
    #[cfg(test)]
    held: Mutex<bool>,
    #[cfg(test)]
    released: Condvar,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("wal", &self.wal).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Waiting {
    /// In the order it was registered: each runs once a flush that began
    /// after it was registered has ended.
    work: Vec<AfterFlush>,
    /// Set when the store is dropped: the thread ends once nothing waits.
    closed: bool,
}

impl Flusher {
    /// Starts the flushing thread of the SQLite file at `path`, whose
    /// write-ahead log already exists, and makes the log's name in its
    /// directory durable (SQLite itself would have done so at its first
    /// flush, which now never comes from SQLite).
    pub(super) fn start(path: &Path) -> std::io::Result<Self> {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        sync_directory(path)?;
        let state = Arc::new(State {
            wal: wal.into(),
            waiting: Mutex::new(Waiting::default()),
            wake: Condvar::new(),
            #[cfg(test)]
            held: Mutex::new(false),
            #[cfg(test)]
            released: Condvar::new(),
        });
        let thread_state = state.clone();
        std::thread::Builder::new()
            .name("eventsourcing-sqlite-flush".into())
            .spawn(move || thread_state.run())?;
        Ok(Self { state })
    }

    /// Runs `then` (on the flushing thread) once a flush that begins after
    /// this call has ended: everything committed before the call is then
    /// on disk.
    pub(super) fn after_next_flush(&self, then: impl FnOnce(Flushed) + Send + 'static) {
        let mut waiting = self.state.lock();
        waiting.work.push(Box::new(then));
        drop(waiting);
        self.state.wake.notify_one();
    }

    /// Waits until everything committed before this call is on disk.
    pub(super) async fn flush(&self) -> Flushed {
        let (done, flushed) = oneshot::channel();
        self.after_next_flush(move |result| {
            let _ = done.send(result);
        });
        flushed.await.unwrap_or_else(|_| {
            Err(Arc::new(std::io::Error::other(
                "the thread that flushes the write-ahead log stopped",
            )))
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.state.lock().closed = true;
        self.state.wake.notify_one();
    }
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Flushes whenever work waits, then runs that work, until the store
    /// is dropped and nothing waits.
    fn run(&self) {
        let mut waiting = self.lock();
        loop {
            while waiting.work.is_empty() && !waiting.closed {
                waiting = self.wake.wait(waiting).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if waiting.work.is_empty() {
                return;
            }
            let work = std::mem::take(&mut waiting.work);
            drop(waiting);
            #[cfg(test)]
            self.wait_while_held();
            let flushed = self.flush_wal().map_err(|error| {
                tracing::error!(wal = %self.wal.display(), %error, "flushing the SQLite write-ahead log failed");
                Arc::new(error)
            });
            for then in work {
                then(flushed.clone());
            }
            waiting = self.lock();
        }
    }

    /// Flushes the write-ahead log. It is opened each time, so that a log
    /// that SQLite removed (when its last connection closed, after copying
    /// it into the database and flushing that) and made again is the one
    /// flushed; with no log, there is nothing to flush.
    fn flush_wal(&self) -> std::io::Result<()> {
        match std::fs::OpenOptions::new().write(true).open(&self.wal) {
            Ok(file) => file.sync_data(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
impl Flusher {
    /// Holds flushes back (`true`) until released (`false`).
    pub(super) fn hold(&self, held: bool) {
        *self.state.held.lock().unwrap() = held;
        self.state.released.notify_all();
    }
}

#[cfg(test)]
impl State {
    fn wait_while_held(&self) {
        let held = self.held.lock().unwrap();
        drop(self.released.wait_while(held, |held| *held).unwrap());
    }
}

/// Makes the names in the directory of `path` durable.
fn sync_directory(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let directory = path.parent().filter(|dir| !dir.as_os_str().is_empty());
        std::fs::File::open(directory.unwrap_or(Path::new(".")))?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    use uuid::Uuid;

    use super::*;
    use crate::store::claims::Claim;
    use crate::store::sqlite::SqliteStore;
    use crate::topics::Topic;
    use crate::{AppName, Error, Recorder, StoredEvent, Timestamp, Versions};

    /// A store in a fresh directory, and the database file.
    async fn store() -> (SqliteStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("eventsourcing-flush-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flush.db");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        (store, path)
    }

    fn event(id: Uuid) -> StoredEvent {
        StoredEvent {
            originator_id: id,
            originator_version: 1,
            timestamp: Timestamp::from_micros(1),
            topic: Topic::new("Flush.Event"),
            state_version: 1,
            state: b"{}".to_vec(),
        }
    }

    /// Waits until another connection on the file (as another process
    /// would) sees the event of `id`: it is committed, flushed or not.
    async fn until_committed(path: &Path, id: Uuid) {
        let mut other = SqliteConnectOptions::new().filename(path).connect().await.unwrap();
        loop {
            let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM held_events WHERE originator_id = ?")
                .bind(id)
                .fetch_optional(&mut other)
                .await
                .unwrap();
            if found.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A commit is answered, and handed out by a read, only once it is on
    /// disk; meanwhile the writer goes on committing the next write.
    #[tokio::test]
    async fn commits_are_answered_and_read_only_once_flushed() {
        let (store, path) = store().await;
        let recorder = store
            .recorder_with(&AppName::new("held").unwrap(), None, Claim::Leave)
            .await
            .unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        store.shared.flusher.hold(true);

        let first = tokio::spawn({
            let recorder = recorder.clone();
            async move { recorder.insert(0, vec![event(a)], None).await }
        });
        until_committed(&path, a).await;
        let reading = tokio::spawn({
            let recorder = recorder.clone();
            async move { recorder.select_events(a, Versions::ALL).await }
        });
        let second = tokio::spawn({
            let recorder = recorder.clone();
            async move { recorder.insert(0, vec![event(b)], None).await }
        });
        // The second write commits while the first one's flush is held.
        until_committed(&path, b).await;
        // Time for the read to run, and to return if it could.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!first.is_finished(), "a write is answered before its flush");
        assert!(!second.is_finished(), "a write is answered before its flush");
        assert!(!reading.is_finished(), "a read hands out a commit before its flush");

        store.shared.flusher.hold(false);
        assert_eq!(first.await.unwrap().unwrap(), [1]);
        assert_eq!(second.await.unwrap().unwrap(), [2]);
        assert_eq!(reading.await.unwrap().unwrap(), [event(a)]);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A flush that fails fails the writes it was to answer, naming the
    /// application: their commits may not be on disk.
    #[tokio::test]
    async fn a_failed_flush_fails_the_writes_it_was_to_answer() {
        let (store, path) = store().await;
        let recorder = store
            .recorder_with(&AppName::new("held").unwrap(), None, Claim::Leave)
            .await
            .unwrap();
        // SQLite keeps writing to the log it has open; the flusher opens
        // the name, which is now a directory.
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::remove_file(&wal).unwrap();
        std::fs::create_dir(&wal).unwrap();

        let error = recorder.insert(0, vec![event(Uuid::now_v7())], None).await.unwrap_err();
        match &error {
            Error::Database { app, action, .. } => {
                assert_eq!(app, "held");
                assert!(action.contains("flushing"), "{action}");
            }
            other => panic!("expected a flush error, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// Work waits for a flush that begins after it was registered, and
    /// every waiter hears how the flush went.
    #[tokio::test]
    async fn waiters_hear_how_the_flush_went() {
        let dir = std::env::temp_dir().join(format!("eventsourcing-flusher-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plain.db");
        let flusher = Flusher::start(&path).unwrap();
        // No log yet: nothing to flush.
        flusher.flush().await.unwrap();
        std::fs::write(dir.join("plain.db-wal"), b"frames").unwrap();
        flusher.flush().await.unwrap();
        std::fs::remove_file(dir.join("plain.db-wal")).unwrap();
        std::fs::create_dir(dir.join("plain.db-wal")).unwrap();
        let (one, two) = tokio::join!(flusher.flush(), flusher.flush());
        assert!(one.is_err() && two.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
