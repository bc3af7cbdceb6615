//! Parking poison notifications: with `OnFailure::Park`, a notification
//! whose handler keeps failing is recorded as a dead letter in the
//! transaction that moves the tracking position past it, and processing
//! goes on. A dead letter is listed, retried (exactly once) or discarded.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsourcing::prelude::*;
use eventsourcing::{
    DeadLetter, Error, NotificationSource, OnFailure, Recorder, RunnerKind, StoredEvent, Timestamp, Tracking,
};
use eventsourcing_tests::unique_app;
use tokio::sync::Barrier;

/// A job to do; `behaviour` says how its handler misbehaves. (The tests
/// read events, not the aggregates' state.)
#[aggregate]
#[derive(Debug, Default)]
#[allow(dead_code)]
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
#[allow(dead_code)]
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
/// Jobs whose handler waits, once fixed, until two calls meet: to make two
/// retries of one dead letter race.
static RACES: Mutex<Option<HashMap<Uuid, Arc<Barrier>>>> = Mutex::new(None);

fn fix(job: Uuid) {
    FIXED.lock().unwrap().get_or_insert_default().insert(job);
}

fn is_fixed(job: Uuid) -> bool {
    FIXED.lock().unwrap().get_or_insert_default().contains(&job)
}

fn race(job: Uuid) {
    RACES
        .lock()
        .unwrap()
        .get_or_insert_default()
        .insert(job, Arc::new(Barrier::new(2)));
}

fn barrier(job: Uuid) -> Option<Arc<Barrier>> {
    RACES.lock().unwrap().get_or_insert_default().get(&job).cloned()
}

/// A handler's error with a cause, so that a dead letter's text shows the
/// whole chain.
#[derive(Debug)]
struct Refused {
    job: Uuid,
    cause: std::io::Error,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job {} refused", self.job)
    }
}

impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

#[derive(Default)]
struct Jobs;

#[policy(aggregates(Job))]
impl Jobs {}

#[derive(Default)]
struct Workers;

#[policy(aggregates(Done))]
impl Workers {
    async fn job_submitted(&self, job: &Notified<JobSubmitted>, repo: &mut Repo<Self>) -> Result<(), Refused> {
        if job.behaviour == "skip" {
            return Ok(());
        }
        // The change comes first, so a failure must roll it back.
        repo.add(Done::record(job.originator_id));
        if job.behaviour == "panic" && !is_fixed(job.originator_id) {
            panic!("boom at job {}", job.originator_id);
        }
        if job.behaviour == "fail" && !is_fixed(job.originator_id) {
            return Err(Refused {
                job: job.originator_id,
                cause: std::io::Error::other("card declined"),
            });
        }
        if let Some(barrier) = barrier(job.originator_id) {
            barrier.wait().await;
        }
        Ok(())
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
        .retries(1, Duration::from_millis(1))
}

fn parking() -> ProcessOptions {
    options().on_failure(OnFailure::Park)
}

/// Starts a runner and waits until the system is quiet.
async fn start(store: &Store, kind: RunnerKind, options: ProcessOptions) -> Result<Runner> {
    let runner = Runner::start(kind, system(), store, options).await?;
    runner.wait_until_quiet().await?;
    Ok(runner)
}

fn assert_names(letter: &DeadLetter, notification_id: u64) {
    assert_eq!(
        (
            letter.app.as_str(),
            letter.upstream.as_str(),
            letter.partition,
            letter.notification_id,
            letter.topic.as_str()
        ),
        ("Workers", "Jobs", 0, notification_id, "Job.Submitted")
    );
}

async fn a_poison_notification_is_parked_and_the_rest_are_processed(store: &Store, kind: RunnerKind) {
    let jobs = submit(store, &["ok", "fail", "ok", "skip", "ok"]).await;
    let before = Timestamp::now();

    let runner = start(store, kind, parking()).await.unwrap();
    assert_eq!(done(store).await, (vec![jobs[0], jobs[2], jobs[4]], 5));

    let letters = runner.dead_letters::<Workers>().await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_names(letter, 2);
    // The handler's error with its cause.
    assert_eq!(letter.error, format!("job {} refused: card declined", jobs[1]));
    // Tried once, again with nothing cached, then once more (`retries(1)`).
    assert_eq!(letter.attempts, 3);
    assert!(letter.parked_at >= before && letter.parked_at <= Timestamp::now());
    assert_eq!(letter.last_failed_at, letter.parked_at);

    // Later notifications are processed as they come; a panic is parked
    // like an error.
    let later = submit(store, &["panic", "ok"]).await;
    runner.wait_until_quiet().await.unwrap();
    assert_eq!(done(store).await, (vec![jobs[0], jobs[2], jobs[4], later[1]], 7));
    let parked: Vec<(u64, String)> = runner
        .dead_letters::<Workers>()
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.notification_id, l.error))
        .collect();
    assert_eq!(
        parked,
        [
            (2, format!("job {} refused: card declined", jobs[1])),
            (6, format!("the handler panicked: boom at job {}", later[0]))
        ]
    );
    runner.shutdown().await.unwrap();
}

async fn a_retry_after_the_fix_processes_it_once(store: &Store, kind: RunnerKind) {
    let jobs = submit(store, &["ok", "fail", "ok"]).await;
    let runner = start(store, kind, parking()).await.unwrap();
    let letter = runner.dead_letters::<Workers>().await.unwrap().remove(0);

    fix(jobs[1]);
    let ids = runner.retry_dead_letter(&letter).await.unwrap();
    assert_eq!(ids, [3], "the retry's event follows the two recorded");
    runner.wait_until_quiet().await.unwrap();
    assert_eq!(done(store).await, (vec![jobs[0], jobs[2], jobs[1]], 3));
    assert!(runner.dead_letters::<Workers>().await.unwrap().is_empty());

    // A second retry of the same dead letter is an error and records nothing.
    let error = runner.retry_dead_letter(&letter).await.unwrap_err();
    assert_not_found(error, 2);
    assert_eq!(done(store).await, (vec![jobs[0], jobs[2], jobs[1]], 3));
    runner.shutdown().await.unwrap();
}

fn assert_not_found(error: Error, notification: u64) {
    match error {
        Error::DeadLetterNotFound {
            app,
            upstream,
            partition,
            notification_id,
            topic,
        } => assert_eq!(
            (
                app.as_str(),
                upstream.as_str(),
                partition,
                notification_id,
                topic.as_str()
            ),
            ("Workers", "Jobs", 0, notification, "Job.Submitted")
        ),
        other => panic!("expected DeadLetterNotFound, got {other}"),
    }
}

async fn a_retry_that_fails_again_stays_parked(store: &Store) {
    let jobs = submit(store, &["fail"]).await;
    let runner = start(store, RunnerKind::SingleThreaded, parking()).await.unwrap();
    let letter = runner.dead_letters::<Workers>().await.unwrap().remove(0);

    let error = runner.retry_dead_letter(&letter).await.unwrap_err();
    let text = error.to_string();
    match &error {
        Error::RetryFailed {
            app,
            upstream,
            partition,
            notification_id,
            topic,
            attempts,
            source,
        } => {
            assert_eq!(
                (
                    app.as_str(),
                    upstream.as_str(),
                    *partition,
                    *notification_id,
                    topic.as_str(),
                    *attempts
                ),
                ("Workers", "Jobs", 0, 1, "Job.Submitted", 4)
            );
            assert!(source.to_string().contains("refused"), "{source}");
        }
        other => panic!("expected RetryFailed, got {other}"),
    }
    assert!(text.contains("stays parked"), "{text}");

    let again = runner.dead_letters::<Workers>().await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 4);
    assert!(again[0].last_failed_at > letter.last_failed_at);
    assert_eq!(again[0].parked_at, letter.parked_at);
    assert_eq!(done(store).await, (Vec::new(), 1), "the failed retry recorded nothing");

    fix(jobs[0]);
    runner.retry_dead_letter(&again[0]).await.unwrap();
    assert_eq!(done(store).await, (jobs, 1));
    runner.shutdown().await.unwrap();
}

async fn discard_removes_it_and_records_nothing(store: &Store) {
    let jobs = submit(store, &["ok", "fail"]).await;
    let runner = start(store, RunnerKind::SingleThreaded, parking()).await.unwrap();
    let letter = runner.dead_letters::<Workers>().await.unwrap().remove(0);

    runner.discard_dead_letter(&letter).await.unwrap();
    assert!(runner.dead_letters::<Workers>().await.unwrap().is_empty());
    assert_eq!(done(store).await, (vec![jobs[0]], 2));

    assert_not_found(runner.discard_dead_letter(&letter).await.unwrap_err(), 2);
    fix(jobs[1]);
    assert_not_found(runner.retry_dead_letter(&letter).await.unwrap_err(), 2);
    assert_eq!(done(store).await, (vec![jobs[0]], 2));
    runner.shutdown().await.unwrap();
}

async fn two_racing_retries_process_it_once(store: &Store) {
    let jobs = submit(store, &["fail"]).await;
    let runner = start(store, RunnerKind::MultiTask, parking()).await.unwrap();
    let letter = runner.dead_letters::<Workers>().await.unwrap().remove(0);

    // Both retries run the handler, which waits for the other, then both
    // commit: one wins, the other finds the dead letter gone.
    fix(jobs[0]);
    race(jobs[0]);
    let (first, second) = tokio::join!(runner.retry_dead_letter(&letter), runner.retry_dead_letter(&letter));
    let (won, lost) = match (first, second) {
        (Ok(ids), Err(error)) | (Err(error), Ok(ids)) => (ids, error),
        other => panic!("expected one retry to win, got {other:?}"),
    };
    assert_eq!(won, [1]);
    assert_not_found(lost, 1);
    runner.wait_until_quiet().await.unwrap();
    assert_eq!(done(store).await, (jobs, 1));
    runner.shutdown().await.unwrap();
}

/// Two runners on one store race for the same notifications: each poison
/// one is parked once, and every other one processed once.
async fn duplicate_workers_park_each_poison_notification_once(store: &Store) {
    let behaviours: Vec<&str> = (0..60).map(|i| if i % 7 == 3 { "fail" } else { "ok" }).collect();
    let jobs = submit(store, &behaviours).await;
    let options = parking().batch_size(5);
    let first = Runner::multi_task(system(), store, options.clone()).await.unwrap();
    let second = Runner::multi_task(system(), store, options).await.unwrap();
    first.wait_until_quiet().await.unwrap();
    second.wait_until_quiet().await.unwrap();

    let parked: Vec<u64> = first
        .dead_letters::<Workers>()
        .await
        .unwrap()
        .iter()
        .map(|l| l.notification_id)
        .collect();
    let poison: Vec<u64> = (1..=60).filter(|id| (id - 1) % 7 == 3).collect();
    assert_eq!(parked, poison);
    let ok: Vec<Uuid> = jobs
        .iter()
        .zip(&behaviours)
        .filter(|(_, b)| **b == "ok")
        .map(|(job, _)| *job)
        .collect();
    assert_eq!(done(store).await, (ok, 60));
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

/// The position of notifications passed over without a commit moves with
/// the parked one.
async fn parking_moves_past_notifications_passed_over_before_it(store: &Store) {
    submit(store, &["skip", "skip", "fail", "skip"]).await;
    let runner = start(store, RunnerKind::SingleThreaded, parking().batch_size(2))
        .await
        .unwrap();
    assert_eq!(done(store).await, (Vec::new(), 4));
    let letters = runner.dead_letters::<Workers>().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_names(&letters[0], 3);
    runner.shutdown().await.unwrap();
}

/// An event that does not decode is parked; retrying cannot help, so it is
/// discarded.
async fn an_event_that_does_not_decode_is_parked_then_discarded(store: &Store) {
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
    let more = submit(store, &["ok"]).await;

    let runner = start(store, RunnerKind::SingleThreaded, parking()).await.unwrap();
    assert_eq!(done(store).await, (vec![jobs[0], more[0]], 3));
    let letter = runner.dead_letters::<Workers>().await.unwrap().remove(0);
    assert_names(&letter, 2);
    assert!(
        letter.error.starts_with("cannot decode event `Job.Submitted`"),
        "{}",
        letter.error
    );

    let error = runner.retry_dead_letter(&letter).await.unwrap_err();
    assert!(matches!(error, Error::RetryFailed { attempts: 4, .. }), "{error}");
    runner.discard_dead_letter(&letter).await.unwrap();
    assert!(runner.dead_letters::<Workers>().await.unwrap().is_empty());
    assert_eq!(done(store).await, (vec![jobs[0], more[0]], 3));
    runner.shutdown().await.unwrap();
}

async fn the_default_still_stops(store: &Store, kind: RunnerKind) {
    let jobs = submit(store, &["ok", "fail", "ok"]).await;
    let error = start(store, kind, options()).await.unwrap_err();
    assert!(matches!(error, Error::Processing { notification_id: 2, .. }), "{error}");
    assert_eq!(done(store).await, (vec![jobs[0]], 1));
    let workers = Application::open(store, "Workers").await.unwrap();
    assert!(workers.recorder().dead_letters().await.unwrap().is_empty());
}

async fn one_application_parks_by_its_own_setting(store: &Store, kind: RunnerKind) {
    let jobs = submit(store, &["fail", "ok"]).await;
    let options = options().app::<Workers>(|o| o.on_failure(OnFailure::Park));
    let runner = start(store, kind, options).await.unwrap();
    assert_eq!(done(store).await, (vec![jobs[1]], 2));
    assert_eq!(runner.dead_letters::<Workers>().await.unwrap().len(), 1);
    runner.shutdown().await.unwrap();

    // The other way round: parking for all, stopping for Workers.
    let more = submit(store, &["fail"]).await;
    let options = parking().app::<Workers>(|o| o.on_failure(OnFailure::Stop));
    let error = start(store, kind, options).await.unwrap_err();
    assert!(matches!(error, Error::Processing { notification_id: 3, .. }), "{error}");
    assert_eq!(done(store).await, (vec![jobs[1]], 2), "{more:?} was not parked");
}

#[tokio::test]
async fn settings_for_an_application_outside_the_system_are_refused() {
    #[derive(Default)]
    struct Stranger;
    #[policy(aggregates())]
    impl Stranger {}

    let store = eventsourcing_tests::memory_store().await;
    let options = ProcessOptions::default().app::<Stranger>(|o| o.on_failure(OnFailure::Park));
    let error = Runner::single_threaded(system(), &store, options).await.unwrap_err();
    assert!(
        error.to_string().contains("`Stranger`, which is not an application"),
        "{error}"
    );
}

/// Parking on the recorder: the dead letter and the tracking move are one
/// transaction, and so are a retry's events and the dead letter's removal.
async fn parking_and_its_tracking_move_are_atomic(store: &Store) {
    let (app, upstream) = (unique_app("park"), unique_app("up"));
    let recorder = store.recorder(&app).await.unwrap();
    let tracking = |previous, position| Tracking {
        upstream: upstream.clone(),
        partition: 0,
        previous,
        position,
        lease_epoch: None,
    };
    recorder.insert(0, vec![], Some(&tracking(0, 3))).await.unwrap();
    let now = Timestamp::now();
    let letter = |notification_id| DeadLetter {
        app: app.clone(),
        upstream: upstream.clone(),
        partition: 0,
        notification_id,
        topic: "Job.Submitted".to_owned(),
        error: "refused".to_owned(),
        attempts: 2,
        parked_at: now,
        last_failed_at: now,
    };

    // A stale tracking position (another worker moved on): nothing parked.
    let error = recorder.park(&letter(2), &tracking(1, 2)).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::TrackingConflict {
                expected: 1,
                found: 3,
                ..
            }
        ),
        "{error}"
    );
    assert!(recorder.dead_letters().await.unwrap().is_empty());
    assert_eq!(recorder.tracking_position(&upstream, 0).await.unwrap(), 3);

    recorder.park(&letter(4), &tracking(3, 4)).await.unwrap();
    assert_eq!(recorder.tracking_position(&upstream, 0).await.unwrap(), 4);
    assert_eq!(recorder.dead_letters().await.unwrap(), [letter(4)]);

    // A resolution whose events conflict keeps the dead letter.
    let event = |version| StoredEvent {
        originator_id: Uuid::nil(),
        originator_version: version,
        timestamp: now,
        topic: "Done.Recorded".into(),
        state_version: 1,
        state: b"{}".to_vec(),
    };
    recorder.insert(0, vec![event(1)], None).await.unwrap();
    let error = recorder
        .resolve_dead_letter(&letter(4), vec![event(2), event(1)])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Concurrency { version: 1, .. }), "{error}");
    assert_eq!(recorder.dead_letters().await.unwrap(), [letter(4)]);
    assert_eq!(recorder.max_notification_id(0).await.unwrap(), 1);

    // Resolving one that is not parked writes no events.
    let error = recorder
        .resolve_dead_letter(&letter(9), vec![event(2)])
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::DeadLetterNotFound { notification_id: 9, .. }),
        "{error}"
    );
    assert_eq!(recorder.max_notification_id(0).await.unwrap(), 1);

    // A failed retry counts an attempt.
    let failed = DeadLetter {
        error: "refused again".to_owned(),
        last_failed_at: Timestamp::from_micros(now.as_micros() + 1),
        ..letter(4)
    };
    assert_eq!(recorder.record_failed_retry(&failed).await.unwrap(), 3);
    assert_eq!(
        recorder.dead_letters().await.unwrap(),
        [DeadLetter {
            attempts: 3,
            ..failed.clone()
        }]
    );

    assert_eq!(
        recorder.resolve_dead_letter(&letter(4), vec![event(2)]).await.unwrap(),
        [2]
    );
    assert!(recorder.dead_letters().await.unwrap().is_empty());
    assert!(matches!(
        recorder.record_failed_retry(&failed).await,
        Err(Error::DeadLetterNotFound { .. })
    ));
}

/// In a namespace, a system parks and retries like anywhere else, and its
/// dead letters name their upstream as the system does, without the
/// namespace, on every backend.
async fn in_a_namespace_dead_letters_are_parked_and_retried(store: &Store, kind: RunnerKind) {
    let eu = store.namespaced("eu").unwrap();
    a_retry_after_the_fix_processes_it_once(&eu, kind).await;
    let jobs = submit(&eu, &["fail"]).await;
    let runner = start(&eu, kind, parking()).await.unwrap();
    let letter = runner.dead_letters::<Workers>().await.unwrap().remove(0);
    assert_eq!(letter.upstream, eventsourcing::AppName::new("Jobs").unwrap());
    fix(jobs[0]);
    runner.retry_dead_letter(&letter).await.unwrap();
    runner.shutdown().await.unwrap();
}

macro_rules! on_every_backend_with_each_runner {
    ($($check:ident),* $(,)?) => {
        mod each_runner {
            mod memory {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    for kind in [eventsourcing::RunnerKind::SingleThreaded, eventsourcing::RunnerKind::MultiTask] {
                        super::super::$check(&eventsourcing_tests::memory_store().await, kind).await;
                    }
                })*
            }
            mod sqlite {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    for kind in [eventsourcing::RunnerKind::SingleThreaded, eventsourcing::RunnerKind::MultiTask] {
                        let file = eventsourcing_tests::TempSqlite::new();
                        super::super::$check(&file.open().await, kind).await;
                    }
                })*
            }
            mod postgres {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    for kind in [eventsourcing::RunnerKind::SingleThreaded, eventsourcing::RunnerKind::MultiTask] {
                        // The applications have fixed names: a database each.
                        let Some(store) = eventsourcing_tests::fresh_postgres_store().await else { return };
                        super::super::$check(&store, kind).await;
                    }
                })*
            }
        }
    };
}

on_every_backend_with_each_runner!(
    a_poison_notification_is_parked_and_the_rest_are_processed,
    a_retry_after_the_fix_processes_it_once,
    the_default_still_stops,
    one_application_parks_by_its_own_setting,
    in_a_namespace_dead_letters_are_parked_and_retried,
);

eventsourcing_tests::on_every_fresh_backend!(
    a_retry_that_fails_again_stays_parked,
    discard_removes_it_and_records_nothing,
    two_racing_retries_process_it_once,
    duplicate_workers_park_each_poison_notification_once,
    parking_moves_past_notifications_passed_over_before_it,
    an_event_that_does_not_decode_is_parked_then_discarded,
);

eventsourcing_tests::on_every_backend!(parking_and_its_tracking_move_are_atomic);
