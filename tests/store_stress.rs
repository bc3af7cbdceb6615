//! Many concurrent writers and one follower: the follower must see every
//! notification id exactly once, in order, with no gaps, however the
//! writers' commits interleave.
//!
//! This is the test that catches an auto-increment (BIGSERIAL) log: there a
//! later id can become visible before an earlier one commits, and a
//! follower reading "everything after my position" skips the earlier one
//! for good.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use eventsourcing::{NotificationSource, Recorder, Store, StoredEvent, Timestamp};
use eventsourcing_tests::unique_app;
use uuid::Uuid;

const WRITERS: u64 = 8;
const TRANSACTIONS_PER_WRITER: u64 = 2_000;
const MAX_EVENTS_PER_TRANSACTION: u64 = 5;

/// A small deterministic generator, so that each writer's batch sizes vary.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `WRITERS` writers, spread over the log's partitions, and a follower
/// per partition: each partition's follower sees its ids 1..N once, in
/// order.
async fn stress(store: Store, partitions: u32) {
    let app = unique_app("stress");
    let recorder = store.partitioned_recorder(&app, partitions).await.unwrap();
    let written: Arc<Vec<AtomicU64>> = Arc::new((0..partitions).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let followers: Vec<_> = (0..partitions)
        .map(|partition| {
            let (recorder, done) = (recorder.clone(), done.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut position = 0u64;
                loop {
                    // Read the flag before reading: once it is set, everything
                    // is committed, so one more read that comes back empty
                    // proves the follower has seen it all.
                    let finished = done.load(Ordering::SeqCst);
                    let batch = recorder
                        .select_notifications(partition, position + 1, 1000)
                        .await
                        .unwrap();
                    for notification in &batch {
                        assert_eq!(notification.partition, partition);
                        seen.push(notification.id);
                        position = notification.id;
                    }
                    if batch.is_empty() {
                        if finished {
                            return seen;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }
            })
        })
        .collect();

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (recorder, written) = (recorder.clone(), written.clone());
            let partition = (writer % u64::from(partitions)) as u32;
            tokio::spawn(async move {
                let mut random = XorShift(0x9E37_79B9_7F4A_7C15 ^ (writer + 1));
                for _ in 0..TRANSACTIONS_PER_WRITER {
                    let count = 1 + random.next() % MAX_EVENTS_PER_TRANSACTION;
                    let id = Uuid::new_v4();
                    let events: Vec<_> = (1..=count)
                        .map(|version| StoredEvent {
                            originator_id: id,
                            originator_version: version,
                            timestamp: Timestamp::now(),
                            topic: "Stress.Written".into(),
                            state_version: 1,
                            state: format!("{{\"writer\":{writer}}}").into_bytes(),
                        })
                        .collect();
                    let ids = recorder.insert(partition, events, None).await.unwrap();
                    assert!(
                        ids.windows(2).all(|w| w[1] == w[0] + 1),
                        "one write's ids are contiguous: {ids:?}"
                    );
                    written[partition as usize].fetch_add(count, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);

    let elapsed = started.elapsed();
    let total: u64 = written.iter().map(|w| w.load(Ordering::SeqCst)).sum();
    eprintln!(
        "{} stress, {partitions} partition(s): {} transactions, {total} events in {elapsed:.1?} ({:.0} events/s)",
        store.backend(),
        WRITERS * TRANSACTIONS_PER_WRITER,
        total as f64 / elapsed.as_secs_f64(),
    );
    for (partition, follower) in (0..partitions).zip(followers) {
        let seen = follower.await.unwrap();
        let written = written[partition as usize].load(Ordering::SeqCst);
        assert_eq!(
            recorder.max_notification_id(partition).await.unwrap(),
            written,
            "partition {partition}: ids 1..N for N events written"
        );
        if let Some(gap) = seen.iter().enumerate().find(|(i, id)| **id != *i as u64 + 1) {
            panic!(
                "partition {partition}: the follower saw id {} where it expected {}: it skipped or repeated notifications",
                gap.1,
                gap.0 + 1
            );
        }
        assert_eq!(
            seen.len() as u64,
            written,
            "partition {partition}: the follower saw every id 1..N exactly once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_follower_sees_every_id_once_in_order() {
    let file = eventsourcing_tests::TempSqlite::new();
    stress(file.open().await, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_follower_sees_every_id_once_in_order() {
    let Some(store) = eventsourcing_tests::postgres_store().await else {
        return;
    };
    stress(store, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_partitions_stay_gapless_and_ordered_under_writers_spread_over_them() {
    let file = eventsourcing_tests::TempSqlite::new();
    stress(file.open().await, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_partitions_stay_gapless_and_ordered_under_writers_spread_over_them() {
    let Some(store) = eventsourcing_tests::postgres_store().await else {
        return;
    };
    stress(store, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_partitions_stay_gapless_and_ordered_under_writers_spread_over_them() {
    stress(eventsourcing_tests::memory_store().await, 4).await;
}

/// Two stores on one SQLite file, as two processes would be: each keeps
/// the notifications it committed last in memory for its followers, and
/// each must read the log exactly as the file holds it, the other's writes
/// included, from any start and past what it keeps (more than it keeps is
/// written).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_stores_sharing_a_file_read_the_log_as_the_file_holds_it() {
    let file = eventsourcing_tests::TempSqlite::new();
    let app = unique_app("shared");
    let stores = [file.open().await, file.open().await];
    let recorders = [
        stores[0].recorder(&app).await.unwrap(),
        stores[1].recorder(&app).await.unwrap(),
    ];
    // By notification id - 1: the (aggregate, version, state) written there.
    let mut log: Vec<(Uuid, u64, Vec<u8>)> = Vec::new();
    let mut rng = XorShift(0x5eed);
    for round in 0..120u64 {
        // The first store alone until it wrote more than it keeps, then
        // sometimes the second, in writes of 1 to 300.
        let writer = usize::from(round >= 80 && rng.next().is_multiple_of(4));
        let id = Uuid::new_v4();
        let count = rng.next() % 300 + 1;
        let events: Vec<StoredEvent> = (1..=count)
            .map(|version| StoredEvent {
                originator_id: id,
                originator_version: version,
                timestamp: Timestamp::now(),
                topic: "Shared.Written".into(),
                state_version: 1,
                state: format!("{round}:{version}").into_bytes(),
            })
            .collect();
        let ids = recorders[writer].insert(0, events, None).await.unwrap();
        assert_eq!(ids.first(), Some(&(log.len() as u64 + 1)));
        log.extend((1..=count).map(|version| (id, version, format!("{round}:{version}").into_bytes())));

        // Each store reads a page from a few places: its start, near the
        // end, and the last notification.
        let max = log.len() as u64;
        for recorder in &recorders {
            for start in [1 + rng.next() % max, max.saturating_sub(rng.next() % 300).max(1), max] {
                let limit = (rng.next() % 400 + 1) as usize;
                let page = recorder.select_notifications(0, start, limit).await.unwrap();
                let expected = (max - start + 1).min(limit as u64);
                assert_eq!(page.len() as u64, expected, "round {round}: {start}+{limit} of {max}");
                for (n, notification) in (start..).zip(&page) {
                    let (id, version, state) = &log[(n - 1) as usize];
                    let event = &notification.event;
                    assert_eq!(
                        (
                            notification.id,
                            event.originator_id,
                            event.originator_version,
                            &event.state
                        ),
                        (n, *id, *version, state),
                        "round {round}: notification {n}"
                    );
                    assert_eq!(event.topic.as_str(), "Shared.Written");
                }
            }
        }
    }
    // Every notification, in pages, through each store.
    for recorder in &recorders {
        let mut next = 1;
        loop {
            let page = recorder.select_notifications(0, next, 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            assert!(page.iter().zip(next..).all(|(n, id)| n.id == id));
            next = last.id + 1;
        }
        assert_eq!(next, log.len() as u64 + 1);
    }
}
