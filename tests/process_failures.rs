//! What happens when a policy fails: an error, a panic, or an event that
//! does not decode rolls back that notification only, is reported with
//! where it happened, and processing resumes at it once the cause is gone.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use eventsourcing::prelude::*;
use eventsourcing::{Error, NotificationSource, Recorder, RunnerKind, StoredEvent, Timestamp};

/// A job to do; `behaviour` says how its handler misbehaves.
#[aggregate]
#[derive(Clone, Debug, Default)]
pub struct Job {
    behaviour: String,
}

#[aggregate]
impl Job {
    #[event(Submitted)]
    pub fn submit(behaviour: String) -> Self {
        Self { behaviour }
    }
}

/// A job done.
#[aggregate]
#[derive(Debug, Default)]
pub struct Done {
    job: Uuid,
}

#[aggregate]
impl Done {
    #[event(Recorded)]
    pub fn record(job: Uuid) -> Self {
        Self { job }
    }
}

/// Jobs whose `fail` behaviour has been fixed.
static FIXED: Mutex<Option<HashSet<Uuid>>> = Mutex::new(None);
/// Attempts so far at each `flaky` job.
static ATTEMPTS: Mutex<Option<HashMap<Uuid, u32>>> = Mutex::new(None);

fn fix(job: Uuid) {
    FIXED.lock().unwrap().get_or_insert_default().insert(job);
}

fn is_fixed(job: Uuid) -> bool {
    FIXED.lock().unwrap().get_or_insert_default().contains(&job)
}

fn attempt(job: Uuid) -> u32 {
    let mut attempts = ATTEMPTS.lock().unwrap();
    let count = attempts.get_or_insert_default().entry(job).or_default();
    *count += 1;
    *count
}

#[derive(Default)]
struct Jobs;

#[policy(aggregates(Job))]
impl Jobs {}

#[derive(Default)]
struct Workers;

#[policy(aggregates(Done))]
impl Workers {
    async fn job_submitted(&self, job: &Notified<JobSubmitted>, repo: &mut Repo<Self>) -> Result<(), String> {
        if job.behaviour == "skip" {
            return Ok(());
        }
        // The change comes first, so a failure must roll it back.
        repo.add(Done::record(job.originator_id));
        match job.behaviour.as_str() {
            "fail" if !is_fixed(job.originator_id) => Err(format!("job {} refused", job.originator_id)),
            "panic" if !is_fixed(job.originator_id) => panic!("boom at job {}", job.originator_id),
            "flaky" if attempt(job.originator_id) <= 2 => Err("not yet".to_owned()),
            _ => Ok(()),
        }
    }
}

fn system() -> System {
    system!(Jobs => Workers)
}

/// Submits jobs with these behaviours in one transaction; returns their ids.
async fn submit(store: &Store, behaviours: &[&str]) -> Vec<Uuid> {
    let jobs = Application::open(store, "Jobs").await.unwrap();
    let mut submitted: Vec<Job> = behaviours.iter().map(|b| Job::submit((*b).to_owned())).collect();
    jobs.save(&mut submitted).await.unwrap();
    submitted.iter().map(Aggregate::id).collect()
}

/// The jobs done, in the order recorded, and the tracking position.
async fn done(store: &Store) -> (Vec<Uuid>, u64) {
    let workers = Application::open(store, "Workers").await.unwrap();
    let jobs = Application::open(store, "Jobs").await.unwrap();
    let log = workers.recorder().select_notifications(0, 1, 1000).await.unwrap();
    let mut done = Vec::new();
    for n in log {
        let DoneEvent::Recorded(recorded) = n.event.decode::<DoneEvent>().unwrap().event;
        done.push(recorded.job);
    }
    let position = workers.recorder().tracking_position(jobs.name(), 0).await.unwrap();
    (done, position)
}

fn options() -> ProcessOptions {
    // One batch for all jobs, so that a failure sits inside a batch.
    ProcessOptions::default()
        .batch_size(100)
        .poll_interval(Duration::from_millis(5))
}

async fn run(store: &Store, kind: RunnerKind, options: ProcessOptions) -> Result<()> {
    let runner = Runner::start(kind, system(), store, options).await?;
    let quiet = runner.wait_until_quiet().await;
    let shutdown = runner.shutdown().await;
    quiet.and(shutdown)
}

fn assert_processing_error(error: Error, notification: u64, cause: &str) {
    match error {
        Error::Processing {
            app,
            upstream,
            partition,
            notification_id,
            topic,
            source,
        } => {
            assert_eq!(
                (
                    app.as_str(),
                    upstream.as_str(),
                    partition,
                    notification_id,
                    topic.as_str()
                ),
                ("Workers", "Jobs", 0, notification, "Job.Submitted")
            );
            assert!(
                source.to_string().contains(cause),
                "cause `{source}` mentions `{cause}`"
            );
        }
        other => panic!("expected a processing error, got {other}"),
    }
}

async fn a_failing_handler_stops_at_its_notification_and_resumes_once_fixed(store: &Store, kind: RunnerKind) {
    let jobs = submit(store, &["ok", "ok", "ok", "fail", "ok", "ok"]).await;

    let error = run(store, kind, options()).await.unwrap_err();
    assert_processing_error(error, 4, "refused");
    // The jobs before it were committed; nothing from it or after it was.
    assert_eq!(done(store).await, (jobs[..3].to_vec(), 3));

    fix(jobs[3]);
    run(store, kind, options()).await.unwrap();
    assert_eq!(done(store).await, (jobs.clone(), 6));
}

async fn a_panicking_handler_is_reported_like_an_error(store: &Store, kind: RunnerKind) {
    let jobs = submit(store, &["ok", "panic", "ok"]).await;

    let error = run(store, kind, options()).await.unwrap_err();
    assert_processing_error(error, 2, "panicked: boom");
    assert_eq!(done(store).await, (jobs[..1].to_vec(), 1));

    fix(jobs[1]);
    run(store, kind, options()).await.unwrap();
    assert_eq!(done(store).await, (jobs, 3));
}

async fn notifications_passed_over_before_a_failure_are_recorded(store: &Store, kind: RunnerKind) {
    let jobs = submit(store, &["skip", "skip", "skip", "fail"]).await;
    let error = run(store, kind, options()).await.unwrap_err();
    assert_processing_error(error, 4, "refused");
    // Nothing was done, but the three before the failing one are processed.
    assert_eq!(done(store).await, (Vec::new(), 3));

    fix(jobs[3]);
    run(store, kind, options()).await.unwrap();
    assert_eq!(done(store).await, (vec![jobs[3]], 4));
}

async fn retries_get_past_a_passing_failure(store: &Store, kind: RunnerKind) {
    let jobs = submit(store, &["ok", "flaky", "ok"]).await;
    let options = options().retries(2, Duration::from_millis(1));
    run(store, kind, options).await.unwrap();
    assert_eq!(done(store).await, (jobs, 3));
}

async fn an_event_that_does_not_decode_stops_processing(store: &Store, kind: RunnerKind) {
    let jobs = submit(store, &["ok"]).await;
    let bad = StoredEvent {
        originator_id: Uuid::new_v4(),
        originator_version: 1,
        timestamp: Timestamp::now(),
        topic: "Job.Submitted".into(),
        state_version: 1,
        state: b"{\"behaviour\": 7}".to_vec(),
    };
    let app = Application::open(store, "Jobs").await.unwrap();
    app.recorder().insert(0, vec![bad], None).await.unwrap();

    let error = run(store, kind, options()).await.unwrap_err();
    assert_processing_error(error, 2, "cannot decode event `Job.Submitted`");
    assert_eq!(done(store).await, (jobs, 1));
}

/// With the single-threaded runner a save also processes; a save that
/// landed but whose processing failed must not look like one that did not
/// land, or a caller retrying on `?` would record the command twice.
async fn a_save_that_landed_is_told_apart_from_one_that_did_not(store: &Store, kind: RunnerKind) {
    let runner = Runner::start(kind, system(), store, options()).await.unwrap();
    let job = Job::submit("fail".to_owned());
    let (mut first, mut second) = (job.clone(), job);

    let saved = runner.save::<Jobs>(&mut first).await.expect("the save itself succeeds");
    assert_eq!(saved.notification_ids, [1]);
    match kind {
        RunnerKind::SingleThreaded => assert_processing_error(saved.processing.unwrap_err(), 1, "refused"),
        _ => saved
            .processing
            .expect("the multi-task runner processes in the background"),
    }

    // The same command again is refused as a whole: nothing saved.
    let error = runner.save::<Jobs>(&mut second).await.unwrap_err();
    assert!(matches!(error, Error::Concurrency { version: 1, .. }), "{error}");
    let jobs = runner.app::<Jobs>().unwrap();
    assert_eq!(jobs.recorder().max_notification_id(0).await.unwrap(), 1);
    let _ = runner.shutdown().await;
}

macro_rules! on_memory_and_sqlite_with_each_runner {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                for kind in [eventsourcing::RunnerKind::SingleThreaded, eventsourcing::RunnerKind::MultiTask] {
                    super::$check(&eventsourcing_tests::memory_store().await, kind).await;
                }
            })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                for kind in [eventsourcing::RunnerKind::SingleThreaded, eventsourcing::RunnerKind::MultiTask] {
                    let file = eventsourcing_tests::TempSqlite::new();
                    super::$check(&file.open().await, kind).await;
                }
            })*
        }
    };
}

on_memory_and_sqlite_with_each_runner!(
    a_failing_handler_stops_at_its_notification_and_resumes_once_fixed,
    a_panicking_handler_is_reported_like_an_error,
    notifications_passed_over_before_a_failure_are_recorded,
    retries_get_past_a_passing_failure,
    an_event_that_does_not_decode_stops_processing,
    a_save_that_landed_is_told_apart_from_one_that_did_not,
);

#[tokio::test]
async fn a_policy_is_unit_tested_without_a_store() {
    let job = Job::submit("fail".to_owned());
    let mut repo = Repo::new();
    let submitted = Notified::new(
        job.id(),
        1,
        JobSubmitted {
            behaviour: "fail".to_owned(),
        },
    );
    let error = Workers.job_submitted(&submitted, &mut repo).await.unwrap_err();
    assert!(error.contains("refused"));
    assert_eq!(job.behaviour, "fail");

    let ok = Notified::new(
        job.id(),
        1,
        JobSubmitted {
            behaviour: "ok".to_owned(),
        },
    );
    Workers.job_submitted(&ok, &mut Repo::new()).await.unwrap();
    let mut repo = Repo::new();
    Workers.job_submitted(&ok, &mut repo).await.unwrap();
    assert_eq!(
        repo.aggregates::<Done>().map(|done| done.job).collect::<Vec<_>>(),
        [job.id()]
    );
}
