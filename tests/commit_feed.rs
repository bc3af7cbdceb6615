//! The commit feed: subscribers hear of each commit of events (the
//! application, the partition and its new head), in this process on every
//! backend, and from other processes on PostgreSQL.

use std::time::Duration;

use eventsourcing::store::{Commits, Committed, Prompt};
use eventsourcing::{AppName, Recorder, Store, StoredEvent, Timestamp, Tracking};
use eventsourcing_tests::{fresh_postgres_url, unique_app};
use uuid::Uuid;

fn events(count: u64) -> Vec<StoredEvent> {
    let id = Uuid::now_v7();
    (1..=count)
        .map(|version| StoredEvent {
            originator_id: id,
            originator_version: version,
            timestamp: Timestamp::now(),
            topic: "Feed.Tested".into(),
            state_version: 1,
            state: b"{}".to_vec(),
        })
        .collect()
}

/// The next prompt, waiting at most `within`.
async fn next(commits: &mut Commits, within: Duration) -> Option<Prompt> {
    tokio::time::timeout(within, commits.next()).await.ok().flatten()
}

fn committed(app: &AppName, partition: u32, head: u64) -> Prompt {
    Prompt::Committed(Committed {
        app: app.clone(),
        partition,
        head,
    })
}

async fn tells_subscribers_of_each_commit_of_events(store: &Store) {
    let mut commits = store.commits().await.unwrap();
    let app = unique_app("feed");
    let recorder = store.partitioned_recorder(&app, 2).await.unwrap();
    recorder.insert(0, events(3), None).await.unwrap();
    assert_eq!(
        next(&mut commits, Duration::from_secs(5)).await,
        Some(committed(&app, 0, 3))
    );
    recorder.insert(1, events(1), None).await.unwrap();
    assert_eq!(
        next(&mut commits, Duration::from_secs(5)).await,
        Some(committed(&app, 1, 1))
    );

    // A tracking move alone, or a write that fails, grows no log: no prompt.
    let tracking = Tracking {
        upstream: unique_app("upstream"),
        partition: 0,
        previous: 0,
        position: 1,
        lease_epoch: None,
    };
    recorder.insert(0, vec![], Some(&tracking)).await.unwrap();
    recorder.insert(0, vec![], Some(&tracking)).await.unwrap_err();
    assert_eq!(next(&mut commits, Duration::from_millis(300)).await, None);

    recorder.insert(0, events(2), None).await.unwrap();
    assert_eq!(
        next(&mut commits, Duration::from_secs(5)).await,
        Some(committed(&app, 0, 5))
    );
}

eventsourcing_tests::on_every_backend!(tells_subscribers_of_each_commit_of_events);

/// Two stores on one database, as two processes would have: each hears the
/// other's commits through `LISTEN`, and its own once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_hear_each_others_commits() {
    let Some(url) = fresh_postgres_url().await else { return };
    let (here, there) = (Store::open(&url).await.unwrap(), Store::open(&url).await.unwrap());
    let mut heard_here = here.commits().await.unwrap();
    let app = AppName::new("orders").unwrap();
    let written_there = there.recorder(&app).await.unwrap();
    let written_here = here.recorder(&app).await.unwrap();

    written_there.insert(0, events(2), None).await.unwrap();
    assert_eq!(
        next(&mut heard_here, Duration::from_secs(5)).await,
        Some(committed(&app, 0, 2)),
        "a commit by another store is heard"
    );

    written_here.insert(0, events(1), None).await.unwrap();
    assert_eq!(
        next(&mut heard_here, Duration::from_secs(5)).await,
        Some(committed(&app, 0, 3))
    );
    // Its own commit's announcement comes back through LISTEN, and is not
    // passed on a second time.
    assert_eq!(next(&mut heard_here, Duration::from_millis(500)).await, None);
}

/// Many commits in a burst by another store: the listener may hear them
/// coalesced, but it always hears the newest head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_announcements_end_at_the_newest_head() {
    let Some(url) = fresh_postgres_url().await else { return };
    let (here, there) = (Store::open(&url).await.unwrap(), Store::open(&url).await.unwrap());
    let mut heard_here = here.commits().await.unwrap();
    let app = AppName::new("payments").unwrap();
    let recorder = there.recorder(&app).await.unwrap();
    for _ in 0..50 {
        recorder.insert(0, events(1), None).await.unwrap();
    }
    let mut newest = 0;
    while newest < 50 {
        match next(&mut heard_here, Duration::from_secs(5)).await {
            Some(Prompt::Committed(c)) => {
                assert!(c.head > newest, "heads only grow: {} after {newest}", c.head);
                newest = c.head;
            }
            other => panic!("expected the commits up to head 50, got {other:?} after {newest}"),
        }
    }
}
