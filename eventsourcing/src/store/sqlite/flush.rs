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
//! a read from the file waits for a flush that began after the read ended:
//! nothing this store hands out can be lost to a power failure, even a
//! commit another process made. Unless nothing was committed since the
//! last flush began, by any process: the log's index header (in the
//! `-shm` file that every connection shares) changes with every commit,
//! and is compared with the header the last flush began with (on Unix,
//! where the file is read as SQLite writes it through its memory map, and
//! unless SQLite was told to lock the file exclusively and keep the index
//! elsewhere). The log is append-only and checksummed frame by frame, so a
//! flush that a power failure interrupts keeps a prefix of the commits,
//! never a later one without an earlier.
//!
//! A flush that fails stops the store: every later write and read fails
//! until it is opened again, and no write touches the file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// What a flush answers: shared by everyone it serves.
pub(super) type Flushed = Result<(), Arc<std::io::Error>>;

/// Work waiting for the next flush to end.
type AfterFlush = Box<dyn FnOnce(Flushed) + Send>;

/// The bytes at the start of the `-shm` file that hold the two copies of
/// the log's index header (SQLite's WAL-index format, the same in every
/// version, since versions share files): a commit changes them, with its
/// frame count and checksums (and new salts when the log starts over).
const INDEX_HEADER: usize = 96;

/// Flushes one SQLite file's write-ahead log on a thread of its own.
#[derive(Debug)]
pub(super) struct Flusher {
    state: Arc<State>,
}

struct State {
    /// The file's write-ahead log, open for as long as the store: SQLite
    /// removes it only when its last connection closes, and the store's
    /// writer stays open, so this is the log SQLite writes (it starts the
    /// log over in place).
    wal: std::fs::File,
    /// Its name, for messages.
    wal_path: PathBuf,
    /// The log's index (`-shm`), where it can be read as SQLite writes it
    /// (without it, every read waits for a flush).
    shm: Option<std::fs::File>,
    waiting: Mutex<Waiting>,
    wake: Condvar,
    /// Tests hold flushes back, to see what waits for them.
    #[cfg(test)]
    held: Mutex<bool>,
    #[cfg(test)]
    released: Condvar,
    #[cfg(test)]
    flushes: std::sync::atomic::AtomicUsize,
    /// Tests make flushes fail, as a disk would.
    #[cfg(test)]
    failing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("wal", &self.wal_path)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Waiting {
    /// In the order it was registered: each runs once a flush that began
    /// after it was registered has ended.
    work: Vec<AfterFlush>,
    /// Set when the store is dropped: the thread ends once nothing waits.
    closed: bool,
    /// Set by the first flush that fails, or when the thread stops: every
    /// later flush fails with it. After a failed `fdatasync` the kernel
    /// may count the lost pages as written, and a later flush that
    /// succeeds would answer for commits that come after them in the log,
    /// which SQLite's recovery drops with them.
    failed: Option<Arc<std::io::Error>>,
    /// The index header as it was when the last flush that succeeded
    /// began: every commit it counts is on disk. `None` once flushing
    /// failed.
    flushed_header: Option<[u8; INDEX_HEADER]>,
}

impl Flusher {
    /// Starts the flushing thread of the SQLite database file `db_file`
    /// (its absolute, resolved name, as SQLite gives it), whose
    /// write-ahead log exists, and makes the log's name durable in its
    /// directory. (SQLite does so when it first writes the log's header;
    /// this does not depend on that, for one flush per store opened.)
    /// `shared_index` says whether SQLite keeps the log's index in the
    /// `-shm` file, as it does unless told to lock the file exclusively.
    pub(super) fn start(db_file: &Path, shared_index: bool) -> std::io::Result<Self> {
        let [mut wal_path, mut shm] = [db_file.as_os_str().to_owned(), db_file.as_os_str().to_owned()];
        wal_path.push("-wal");
        shm.push("-shm");
        let wal_path = PathBuf::from(wal_path);
        let wal = std::fs::OpenOptions::new()
            .write(true)
            .open(&wal_path)
            .map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("opening the write-ahead log `{}`: {error}", wal_path.display()),
                )
            })?;
        sync_directory(db_file)?;
        let state = Arc::new(State {
            wal,
            wal_path,
            // Read as SQLite writes it through its memory map: a shared
            // page cache on Unix; not relied on elsewhere.
            shm: std::fs::File::open(shm).ok().filter(|_| shared_index && cfg!(unix)),
            waiting: Mutex::new(Waiting::default()),
            wake: Condvar::new(),
            #[cfg(test)]
            held: Mutex::new(false),
            #[cfg(test)]
            released: Condvar::new(),
            #[cfg(test)]
            flushes: std::sync::atomic::AtomicUsize::new(0),
            #[cfg(test)]
            failing: std::sync::atomic::AtomicBool::new(false),
        });
        let thread_state = state.clone();
        std::thread::Builder::new()
            .name("eventsourcing-sqlite-flush".into())
            .spawn(move || thread_state.run())?;
        Ok(Self { state })
    }

    /// Runs `then` (on the flushing thread) once a flush that begins after
    /// this call has ended: everything committed before the call is then
    /// on disk. After a flush failed, at once, with that failure.
    pub(super) fn after_next_flush(&self, then: impl FnOnce(Flushed) + Send + 'static) {
        let mut waiting = self.state.lock();
        if let Some(failed) = waiting.failed.clone() {
            drop(waiting);
            return then(Err(failed));
        }
        waiting.work.push(Box::new(then));
        drop(waiting);
        self.state.wake.notify_one();
    }

    /// Waits until everything committed before this call is on disk: at
    /// once if nothing was committed since the last flush began.
    pub(super) async fn flush_unless_flushed(&self) -> Flushed {
        let header = self.state.index_header();
        {
            let waiting = self.state.lock();
            if let Some(failed) = &waiting.failed {
                return Err(failed.clone());
            }
            if header.is_some() && waiting.flushed_header == header {
                return Ok(());
            }
        }
        self.flush().await
    }

    /// The failure that stopped flushing, if one did: nothing may be
    /// written or read after it.
    pub(super) fn failed(&self) -> Option<Arc<std::io::Error>> {
        self.state.lock().failed.clone()
    }

    /// Waits until everything committed before this call is on disk.
    pub(super) async fn flush(&self) -> Flushed {
        let (done, flushed) = oneshot::channel();
        self.after_next_flush(move |result| {
            let _ = done.send(result);
        });
        flushed.await.unwrap_or_else(|_| Err(stopped()))
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.state.lock().closed = true;
        self.state.wake.notify_one();
    }
}

fn stopped() -> Arc<std::io::Error> {
    Arc::new(std::io::Error::other(
        "the thread that flushes the write-ahead log stopped",
    ))
}

/// Whatever ends the flushing thread, work that waits, or comes later,
/// fails instead of waiting forever.
struct OnStop<'a>(&'a State);

impl Drop for OnStop<'_> {
    fn drop(&mut self) {
        let mut waiting = self.0.lock();
        let failed = waiting.failed.get_or_insert_with(stopped).clone();
        waiting.flushed_header = None;
        let work = std::mem::take(&mut waiting.work);
        drop(waiting);
        run_all(work, &Err(failed));
    }
}

/// Runs each piece of work; one that panics is logged and does not stop
/// the others or the thread.
fn run_all(work: Vec<AfterFlush>, flushed: &Flushed) {
    for then in work {
        let flushed = flushed.clone();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || then(flushed))).is_err() {
            tracing::error!("work after a flush of the SQLite write-ahead log panicked");
        }
    }
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Flushes whenever work waits, then runs that work, until the store
    /// is dropped and nothing waits.
    fn run(&self) {
        let _on_stop = OnStop(self);
        let mut waiting = self.lock();
        loop {
            while waiting.work.is_empty() && !waiting.closed {
                waiting = self.wake.wait(waiting).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if waiting.work.is_empty() {
                return;
            }
            let work = std::mem::take(&mut waiting.work);
            let failed = waiting.failed.clone();
            drop(waiting);
            let flushed = match failed {
                Some(failed) => Err(failed),
                None => self.flush_once(),
            };
            run_all(work, &flushed);
            waiting = self.lock();
        }
    }

    /// Flushes the log, noting the index header it began with, or that
    /// flushing failed for good.
    fn flush_once(&self) -> Flushed {
        #[cfg(test)]
        self.wait_while_held();
        let header = self.index_header();
        let flushed = self.sync_wal();
        #[cfg(test)]
        self.flushes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut waiting = self.lock();
        match flushed {
            Ok(()) => {
                waiting.flushed_header = header;
                Ok(())
            }
            Err(error) => {
                let error = Arc::new(error);
                waiting.failed = Some(error.clone());
                waiting.flushed_header = None;
                drop(waiting);
                tracing::error!(
                    wal = %self.wal_path.display(), %error,
                    "flushing the SQLite write-ahead log failed; the store fails every write and read until it is opened again"
                );
                Err(error)
            }
        }
    }

    fn sync_wal(&self) -> std::io::Result<()> {
        #[cfg(test)]
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("injected by a test"));
        }
        self.wal.sync_data()
    }

    /// The log's index header, if there is an index to read.
    fn index_header(&self) -> Option<[u8; INDEX_HEADER]> {
        #[cfg(unix)]
        {
            let mut header = [0; INDEX_HEADER];
            std::os::unix::fs::FileExt::read_exact_at(self.shm.as_ref()?, &mut header, 0).ok()?;
            Some(header)
        }
        #[cfg(not(unix))]
        {
            let _ = &self.shm;
            None
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    use uuid::Uuid;

    use super::*;
    use crate::store::claims::Claim;
    use crate::store::sqlite::{SqliteRecorder, SqliteStore};
    use crate::topics::Topic;
    use crate::{AppName, Error, NotificationSource, Recorder, StoredEvent, Timestamp, Versions};

    /// A store in a fresh directory, the recorder of its application
    /// `held` (tables `held_…`), and the database file.
    async fn store() -> (SqliteStore, SqliteRecorder, PathBuf) {
        let dir = std::env::temp_dir().join(format!("eventsourcing-flush-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flush.db");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let recorder = store
            .recorder_with(&AppName::new("held").unwrap(), None, Claim::Leave)
            .await
            .unwrap();
        (store, recorder, path)
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
        let (store, recorder, path) = store().await;
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

    /// A read with nothing committed since the last flush began, by any
    /// connection, does not wait for another flush; a read after a commit
    /// by another connection (as another process would make) does.
    #[tokio::test]
    async fn a_read_flushes_only_after_a_commit_since_the_last_flush() {
        use std::sync::atomic::Ordering;

        let (store, recorder, path) = store().await;
        let id = Uuid::now_v7();
        recorder.insert(0, vec![event(id)], None).await.unwrap();
        let flushes = || store.shared.flusher.state.flushes.load(Ordering::SeqCst);
        let before = flushes();
        assert_eq!(recorder.select_events(id, Versions::ALL).await.unwrap().len(), 1);
        assert_eq!(recorder.max_notification_id(0).await.unwrap(), 1);
        assert_eq!(flushes(), before, "reads flushed with nothing to flush");

        let mut other = SqliteConnectOptions::new().filename(&path).connect().await.unwrap();
        sqlx::query("CREATE TABLE elsewhere (x INTEGER)")
            .execute(&mut other)
            .await
            .unwrap();
        assert_eq!(recorder.select_events(id, Versions::ALL).await.unwrap().len(), 1);
        assert_eq!(
            flushes(),
            before + 1,
            "a read after another connection's commit did not flush"
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// Expects the error of a failed flush, naming the application `held`
    /// (or the one given).
    fn flush_failed<T: std::fmt::Debug>(result: crate::Result<T>) {
        flush_failed_in("held", result);
    }

    fn flush_failed_in<T: std::fmt::Debug>(expected: &str, result: crate::Result<T>) {
        match result {
            Err(Error::Database { app, action, .. }) => {
                assert_eq!(app, expected);
                assert!(action.contains("flushing"), "{action}");
            }
            other => panic!("expected a flush error, got {other:?}"),
        }
    }

    /// Rows in the application's events table, as another connection sees
    /// them: committed, flushed or not.
    async fn rows(path: &Path) -> i64 {
        let mut other = SqliteConnectOptions::new().filename(path).connect().await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM held_events")
            .fetch_one(&mut other)
            .await
            .unwrap()
    }

    /// A flush that fails fails the writes it was to answer: their commits
    /// may not be on disk. And every write and read after it fails too,
    /// though the disk answers again (a flush that succeeded then would
    /// vouch for commits that follow lost ones), and writes nothing.
    #[tokio::test]
    async fn a_failed_flush_fails_every_write_and_read_after_it() {
        use std::sync::atomic::Ordering;

        let (store, recorder, path) = store().await;
        let stored = Uuid::now_v7();
        recorder.insert(0, vec![event(stored)], None).await.unwrap();

        store.shared.flusher.state.failing.store(true, Ordering::SeqCst);
        flush_failed(recorder.insert(0, vec![event(Uuid::now_v7())], None).await);
        store.shared.flusher.state.failing.store(false, Ordering::SeqCst);
        assert_eq!(rows(&path).await, 2, "the write whose flush failed is in the log");

        flush_failed(recorder.insert(0, vec![event(Uuid::now_v7())], None).await);
        assert_eq!(rows(&path).await, 2, "a write after a failed flush was written");
        flush_failed(recorder.select_events(stored, Versions::ALL).await);
        flush_failed(recorder.select_notifications(0, 100, 10).await);
        flush_failed_in(
            "later",
            store
                .recorder_with(&AppName::new("later").unwrap(), None, Claim::Leave)
                .await,
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A flush that fails with nothing new committed fails the reads after
    /// it, though the log's index shows no commit since the last flush.
    #[tokio::test]
    async fn a_failed_flush_fails_reads_of_what_did_not_change() {
        use std::sync::atomic::Ordering;

        let (store, recorder, path) = store().await;
        let stored = Uuid::now_v7();
        recorder.insert(0, vec![event(stored)], None).await.unwrap();
        recorder.select_events(stored, Versions::ALL).await.unwrap();

        store.shared.flusher.state.failing.store(true, Ordering::SeqCst);
        assert!(store.shared.flusher.flush().await.is_err());
        store.shared.flusher.state.failing.store(false, Ordering::SeqCst);
        flush_failed(recorder.select_events(stored, Versions::ALL).await);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// The log flushed is the one SQLite writes: next to the file a
    /// symbolic link points to, by an absolute name.
    #[cfg(unix)]
    #[tokio::test]
    async fn flushes_the_log_of_the_file_a_link_points_to() {
        let dir = std::env::temp_dir().join(format!("eventsourcing-link-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(dir.join("real.db"), dir.join("link.db")).unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.join("link.db").display()))
            .await
            .unwrap();
        let recorder = store
            .recorder_with(&AppName::new("linked").unwrap(), None, Claim::Leave)
            .await
            .unwrap();
        recorder.insert(0, vec![event(Uuid::now_v7())], None).await.unwrap();
        let real = std::fs::canonicalize(&dir).unwrap().join("real.db-wal");
        assert_eq!(store.shared.flusher.state.wal_path, real);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Work that panics does not stop the flushing thread; a log that does
    /// not exist is refused when flushing starts.
    #[tokio::test]
    async fn work_that_panics_stops_nothing() {
        let dir = std::env::temp_dir().join(format!("eventsourcing-flusher-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plain.db");
        let missing = Flusher::start(&path, true).unwrap_err();
        assert!(missing.to_string().contains("plain.db-wal"), "{missing}");

        std::fs::write(dir.join("plain.db-wal"), b"frames").unwrap();
        let flusher = Flusher::start(&path, true).unwrap();
        flusher.after_next_flush(|_| panic!("work that panics"));
        flusher.flush().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
