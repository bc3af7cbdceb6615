//! The recorder's promises, written once and checked against every backend.

use eventsourcing::store::{OutboxWrite, Outgoing, OutgoingChange};
use eventsourcing::{
    Aggregate, AppName, Error, NotificationSource, Recorder, Store, StoredEvent, Timestamp, Tracking, Versions,
};
use eventsourcing_tests::{Dog, unique_app};
use uuid::Uuid;

fn event(id: Uuid, version: u64, topic: &str, state: &[u8]) -> StoredEvent {
    StoredEvent {
        originator_id: id,
        originator_version: version,
        timestamp: Timestamp::now(),
        topic: topic.into(),
        state_version: 1,
        state: state.to_vec(),
    }
}

fn tracking(upstream: &AppName, previous: u64, position: u64) -> Tracking {
    Tracking {
        upstream: upstream.clone(),
        partition: 0,
        previous,
        position,
        lease_epoch: None,
    }
}

async fn stores_and_reads_an_aggregates_events(store: &Store) {
    let recorder = store.recorder(&unique_app("dogs")).await.unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let written: Vec<_> = (1..=5)
        .map(|v| event(a, v, "Dog.TrickAdded", format!("{{\"v\":{v}}}").as_bytes()))
        .collect();
    recorder.insert(0, written[..2].to_vec(), None).await.unwrap();
    recorder
        .insert(0, vec![event(b, 1, "Dog.Registered", b"{}")], None)
        .await
        .unwrap();
    recorder.insert(0, written[2..].to_vec(), None).await.unwrap();

    assert_eq!(recorder.select_events(a, Versions::ALL).await.unwrap(), written);
    assert_eq!(
        recorder.select_events(a, Versions::from_range(3..)).await.unwrap(),
        written[2..]
    );
    assert_eq!(
        recorder.select_events(a, Versions::from_range(..=2)).await.unwrap(),
        written[..2]
    );
    assert_eq!(
        recorder.select_events(a, Versions::from_range(2..4)).await.unwrap(),
        written[1..3]
    );
    assert_eq!(recorder.select_events(a, Versions::from_range(6..)).await.unwrap(), []);
    assert_eq!(recorder.select_events(Uuid::new_v4(), Versions::ALL).await.unwrap(), []);
    assert_eq!(recorder.select_events(b, Versions::ALL).await.unwrap().len(), 1);
}

async fn keeps_topic_state_and_timestamp_exactly(store: &Store) {
    let recorder = store.recorder(&unique_app("exact")).await.unwrap();
    let id = Uuid::new_v4();
    let mut written = event(id, 1, "Dög.Ünïcode 🐕", &[0, 159, 146, 150, 255]);
    written.timestamp = Timestamp::from_micros(1_795_421_702_123_456);
    recorder.insert(0, vec![written.clone()], None).await.unwrap();
    assert_eq!(
        recorder.select_events(id, Versions::ALL).await.unwrap(),
        [written.clone()]
    );
    let notifications = recorder.select_notifications(0, 1, 10).await.unwrap();
    assert_eq!(notifications.len(), 1);
    assert_eq!((notifications[0].id, notifications[0].partition), (1, 0));
    assert_eq!(notifications[0].event, written);
}

async fn numbers_notifications_contiguously(store: &Store) {
    let recorder = store.recorder(&unique_app("log")).await.unwrap();
    assert_eq!(recorder.max_notification_id(0).await.unwrap(), 0);
    assert_eq!(recorder.select_notifications(0, 1, 10).await.unwrap(), []);

    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let ids = recorder
        .insert(0, vec![event(a, 1, "A", b"1"), event(b, 1, "B", b"1")], None)
        .await
        .unwrap();
    assert_eq!(ids, [1, 2]);
    let ids = recorder.insert(0, vec![event(a, 2, "A", b"2")], None).await.unwrap();
    assert_eq!(ids, [3]);
    let many: Vec<_> = (2..=301).map(|v| event(b, v, "B", b"x")).collect();
    let ids = recorder.insert(0, many, None).await.unwrap();
    assert_eq!(ids, (4..=303).collect::<Vec<u64>>());
    assert_eq!(recorder.max_notification_id(0).await.unwrap(), 303);

    let all = recorder.select_notifications(0, 1, 1000).await.unwrap();
    assert_eq!(
        all.iter().map(|n| n.id).collect::<Vec<_>>(),
        (1..=303).collect::<Vec<u64>>()
    );
    assert_eq!((all[2].event.originator_id, all[2].event.originator_version), (a, 2));
    assert_eq!(all[302].event.originator_version, 301);

    let page = recorder.select_notifications(0, 100, 5).await.unwrap();
    assert_eq!(page.iter().map(|n| n.id).collect::<Vec<_>>(), [100, 101, 102, 103, 104]);
    assert_eq!(recorder.select_notifications(0, 304, 5).await.unwrap(), []);
    assert_eq!(
        recorder.select_notifications(1, 1, 5).await.unwrap(),
        [],
        "other partitions are empty"
    );
}

async fn rejects_an_existing_version_and_writes_nothing(store: &Store) {
    let app = unique_app("occ");
    let recorder = store.recorder(&app).await.unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    recorder.insert(0, vec![event(a, 1, "A", b"1")], None).await.unwrap();

    let err = recorder
        .insert(0, vec![event(b, 1, "B", b"1"), event(a, 1, "A", b"again")], None)
        .await
        .unwrap_err();
    match &err {
        Error::Concurrency {
            app: name,
            originator_id,
            version,
        } => {
            assert_eq!((name.as_str(), *originator_id, *version), (app.as_str(), a, 1));
        }
        other => panic!("expected a concurrency error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&a.to_string()) && message.contains("version 1"),
        "{message}"
    );

    assert_eq!(
        recorder.select_events(b, Versions::ALL).await.unwrap(),
        [],
        "nothing of the failed write is stored"
    );
    assert_eq!(recorder.select_events(a, Versions::ALL).await.unwrap()[0].state, b"1");
    assert_eq!(recorder.max_notification_id(0).await.unwrap(), 1);
    assert_eq!(
        recorder.insert(0, vec![event(b, 1, "B", b"1")], None).await.unwrap(),
        [2],
        "no id was used up"
    );
}

async fn rejects_one_version_twice_in_a_write(store: &Store) {
    let recorder = store.recorder(&unique_app("twice")).await.unwrap();
    let a = Uuid::new_v4();
    let err = recorder
        .insert(0, vec![event(a, 1, "A", b"1"), event(a, 1, "A", b"2")], None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Concurrency { originator_id, version: 1, .. } if originator_id == a),
        "{err:?}"
    );
    assert_eq!(recorder.max_notification_id(0).await.unwrap(), 0);
}

async fn rejects_version_zero(store: &Store) {
    let recorder = store.recorder(&unique_app("zero")).await.unwrap();
    let err = recorder
        .insert(0, vec![event(Uuid::new_v4(), 0, "A", b"1")], None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidWrite { .. }), "{err:?}");
}

/// A state version a store cannot keep is refused whole, never cut short.
async fn rejects_state_versions_out_of_range(store: &Store) {
    let recorder = store.recorder(&unique_app("stateversion")).await.unwrap();
    let max = eventsourcing::store::MAX_STATE_VERSION;
    for state_version in [0, max + 1, u32::MAX] {
        let mut bad = event(Uuid::new_v4(), 1, "A", b"1");
        bad.state_version = state_version;
        let err = recorder.insert(0, vec![bad], None).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidWrite { reason, .. } if reason.contains("state versions run from 1")),
            "{state_version}: {err:?}"
        );
    }
    let mut highest = event(Uuid::new_v4(), 1, "A", b"1");
    highest.state_version = max;
    recorder.insert(0, vec![highest.clone()], None).await.unwrap();
    let stored = recorder
        .select_events(highest.originator_id, Versions::ALL)
        .await
        .unwrap();
    assert_eq!(stored[0].state_version, max);
    assert_eq!(recorder.max_notification_id(0).await.unwrap(), 1);
}

async fn moves_tracking_forward_once_per_notification(store: &Store) {
    let app = unique_app("down");
    let recorder = store.recorder(&app).await.unwrap();
    let upstream = unique_app("up");
    assert_eq!(recorder.tracking_position(&upstream, 0).await.unwrap(), 0);

    let a = Uuid::new_v4();
    recorder
        .insert(0, vec![event(a, 1, "A", b"1")], Some(&tracking(&upstream, 0, 3)))
        .await
        .unwrap();
    assert_eq!(recorder.tracking_position(&upstream, 0).await.unwrap(), 3);
    assert_eq!(
        recorder.tracking_position(&upstream, 1).await.unwrap(),
        0,
        "partitions are tracked apart"
    );

    // A second attempt at the same notifications fails and leaves no trace.
    let b = Uuid::new_v4();
    let err = recorder
        .insert(0, vec![event(b, 1, "B", b"1")], Some(&tracking(&upstream, 0, 3)))
        .await
        .unwrap_err();
    match &err {
        Error::TrackingConflict {
            app: name,
            upstream: up,
            partition: 0,
            expected: 0,
            found: 3,
        } => {
            assert_eq!((name.as_str(), up.as_str()), (app.as_str(), upstream.as_str()));
        }
        other => panic!("expected a tracking conflict, got {other:?}"),
    }
    let err = recorder
        .insert(0, vec![event(b, 1, "B", b"1")], Some(&tracking(&upstream, 2, 3)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TrackingConflict {
                expected: 2,
                found: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(recorder.select_events(b, Versions::ALL).await.unwrap(), []);
    assert_eq!(recorder.max_notification_id(0).await.unwrap(), 1);

    // Moving on from where it is works, with or without events.
    recorder
        .insert(0, vec![], Some(&tracking(&upstream, 3, 4)))
        .await
        .unwrap();
    recorder
        .insert(0, vec![event(b, 1, "B", b"1")], Some(&tracking(&upstream, 4, 9)))
        .await
        .unwrap();
    assert_eq!(recorder.tracking_position(&upstream, 0).await.unwrap(), 9);
    assert_eq!(recorder.max_notification_id(0).await.unwrap(), 2);

    // A tracking position never moves backwards or stays put.
    let err = recorder
        .insert(0, vec![], Some(&tracking(&upstream, 9, 9)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidWrite { .. }), "{err:?}");
    let err = recorder
        .insert(0, vec![], Some(&tracking(&upstream, 9, 4)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidWrite { .. }), "{err:?}");

    // A version conflict rolls back the tracking position too.
    let err = recorder
        .insert(0, vec![event(a, 1, "A", b"x")], Some(&tracking(&upstream, 9, 10)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Concurrency { .. }), "{err:?}");
    assert_eq!(recorder.tracking_position(&upstream, 0).await.unwrap(), 9);
}

/// A write whose tracking position moved and whose events repeat an
/// existing version is told of the tracking conflict (the notifications
/// were processed already; the version conflict follows from that), on the
/// first position as on later ones, and leaves nothing behind. (SQLite runs
/// a write's statements in one round trip, the insert after a tracking move
/// that found nothing to move.)
async fn reports_a_moved_tracking_position_before_an_existing_version(store: &Store) {
    let recorder = store.recorder(&unique_app("both")).await.unwrap();
    let upstream = unique_app("up");
    let taken = Uuid::new_v4();
    recorder
        .insert(0, vec![event(taken, 1, "A", b"1")], Some(&tracking(&upstream, 0, 4)))
        .await
        .unwrap();
    for previous in [0, 2] {
        let fresh = Uuid::new_v4();
        let events = vec![event(fresh, 1, "A", b"2"), event(taken, 1, "A", b"2")];
        let err = recorder
            .insert(0, events, Some(&tracking(&upstream, previous, 6)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::TrackingConflict { expected, found: 4, .. } if expected == previous),
            "from {previous}: {err:?}"
        );
        assert_eq!(recorder.select_events(fresh, Versions::ALL).await.unwrap(), []);
    }
    assert_eq!(recorder.tracking_position(&upstream, 0).await.unwrap(), 4);
    assert_eq!(recorder.max_notification_id(0).await.unwrap(), 1);
}

async fn lets_one_of_two_concurrent_writers_win(store: &Store) {
    let recorder = store.recorder(&unique_app("race")).await.unwrap();
    let upstream = unique_app("up");
    for round in 0..20u64 {
        let id = Uuid::new_v4();
        let (first, second) = (recorder.clone(), recorder.clone());
        let (t1, t2) = (
            tracking(&upstream, round, round + 1),
            tracking(&upstream, round, round + 1),
        );
        let (e1, e2) = (
            vec![event(id, 1, "A", b"first")],
            vec![event(Uuid::new_v4(), 1, "A", b"second")],
        );
        let (r1, r2) = tokio::join!(first.insert(0, e1, Some(&t1)), second.insert(0, e2, Some(&t2)));
        assert!(r1.is_ok() != r2.is_ok(), "exactly one write wins: {r1:?} {r2:?}");
        let loser = r1.err().or(r2.err()).unwrap();
        assert!(matches!(loser, Error::TrackingConflict { .. }), "{loser:?}");

        let (e1, e2) = (vec![event(id, 2, "A", b"first")], vec![event(id, 2, "A", b"second")]);
        let (r1, r2) = tokio::join!(first.insert(0, e1, None), second.insert(0, e2, None));
        assert!(r1.is_ok() != r2.is_ok(), "exactly one write wins: {r1:?} {r2:?}");
        let loser = r1.err().or(r2.err()).unwrap();
        assert!(matches!(loser, Error::Concurrency { version: 2, .. }), "{loser:?}");
    }
    let ids: Vec<u64> = recorder
        .select_notifications(0, 1, 100)
        .await
        .unwrap()
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, (1..=40).collect::<Vec<_>>());
}

async fn keeps_applications_apart_and_creates_tables_once(store: &Store) {
    let (one, two) = (unique_app("one"), unique_app("two"));
    let first = store.recorder(&one).await.unwrap();
    let other = store.recorder(&two).await.unwrap();
    let id = Uuid::new_v4();
    first.insert(0, vec![event(id, 1, "A", b"1")], None).await.unwrap();
    assert_eq!(other.max_notification_id(0).await.unwrap(), 0);
    assert_eq!(other.select_events(id, Versions::ALL).await.unwrap(), []);
    other.insert(0, vec![event(id, 1, "A", b"1")], None).await.unwrap();

    let again = store.recorder(&one).await.unwrap();
    assert_eq!(
        again.max_notification_id(0).await.unwrap(),
        1,
        "reopening keeps the data"
    );
    assert_eq!(again.insert(0, vec![event(id, 2, "A", b"2")], None).await.unwrap(), [2]);
    assert_eq!(first.max_notification_id(0).await.unwrap(), 2);
}

async fn round_trips_a_hand_written_aggregate(store: &Store) {
    let recorder = store.recorder(&unique_app("kennel")).await.unwrap();
    let mut dog = Dog::register("Fido");
    dog.add_trick("roll over");
    dog.add_trick("play dead");
    assert_eq!(dog.pending_events().len(), 3);
    let ids = recorder.insert(0, dog.encode_pending().unwrap(), None).await.unwrap();
    dog.clear_pending();
    assert_eq!(ids, [1, 2, 3]);
    assert!(dog.pending_events().is_empty());

    let stored = recorder.select_events(dog.id(), Versions::ALL).await.unwrap();
    let loaded = Dog::replay(&stored).unwrap().expect("the dog exists");
    assert_eq!(loaded, dog);
    assert_eq!(
        (loaded.version(), loaded.created_on(), loaded.modified_on()),
        (3, dog.created_on(), dog.modified_on())
    );

    let at_two = Dog::replay(
        &recorder
            .select_events(dog.id(), Versions::from_range(..=2))
            .await
            .unwrap(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (at_two.version(), at_two.tricks.as_slice()),
        (2, ["roll over".to_owned()].as_slice())
    );
}

/// Many writers at once, across two applications, some of whom conflict
/// (an existing version, a tracking position already moved): each conflict
/// fails alone, and every other write is recorded whole. (The SQLite store
/// records concurrent writes in one transaction; this is its promise that
/// they stay independent.)
async fn fails_conflicting_writes_alone_among_concurrent_ones(store: &Store) {
    let apps = [unique_app("crowd"), unique_app("crowd")];
    let upstream = unique_app("up");
    let recorders = [
        store.recorder(&apps[0]).await.unwrap(),
        store.recorder(&apps[1]).await.unwrap(),
    ];
    let taken = Uuid::new_v4();
    recorders[0]
        .insert(0, vec![event(taken, 1, "A", b"0")], None)
        .await
        .unwrap();
    recorders[1]
        .insert(0, vec![], Some(&tracking(&upstream, 0, 5)))
        .await
        .unwrap();

    // The first application has `taken`, the second a tracking position.
    let which = |i: u64| match i {
        3 => 0,
        4 => 1,
        _ => (i % 2) as usize,
    };
    // Events recorded per application: the one taken version so far.
    let mut totals = [1u64, 0];
    for round in 0..10u64 {
        let mut writes = Vec::new();
        for i in 0..12u64 {
            let recorder = recorders[which(i)].clone();
            let upstream = upstream.clone();
            writes.push(tokio::spawn(async move {
                let fresh = Uuid::new_v4();
                let (events, tracking) = match i {
                    // The version exists: a concurrency conflict.
                    3 => (vec![event(fresh, 1, "A", b"1"), event(taken, 1, "A", b"1")], None),
                    // Position 5 was recorded, not 0: a tracking conflict.
                    4 if round == 0 => (vec![event(fresh, 1, "A", b"1")], Some(tracking(&upstream, 0, 9))),
                    _ => ((1..=i % 3 + 1).map(|v| event(fresh, v, "A", b"1")).collect(), None),
                };
                let len = events.len();
                (recorder.insert(0, events, tracking.as_ref()).await, len)
            }));
        }
        for (i, write) in writes.into_iter().enumerate() {
            let (result, len) = write.await.unwrap();
            match (i, result) {
                (3, Err(Error::Concurrency { originator_id, .. })) => assert_eq!(originator_id, taken),
                (4, Err(Error::TrackingConflict { found: 5, .. })) if round == 0 => {}
                (_, Ok(ids)) => {
                    assert_eq!(ids.len(), len);
                    totals[which(i as u64)] += len as u64;
                }
                (i, other) => panic!("write {i} of round {round}: unexpected {other:?}"),
            }
        }
    }
    // Every log is contiguous and holds exactly the successful writes' events.
    for (recorder, total) in recorders.iter().zip(totals) {
        let max = recorder.max_notification_id(0).await.unwrap();
        let all = recorder.select_notifications(0, 1, 100_000).await.unwrap();
        assert_eq!((all.len() as u64, max), (total, total));
        assert!(all.iter().enumerate().all(|(i, n)| n.id == i as u64 + 1));
        assert!(
            all.iter()
                .all(|n| n.event.state != b"1" || n.event.originator_id != taken)
        );
    }
}

/// Writes whose callers stop waiting at every moment (a timeout from 0 to
/// 3 ms) never stop later writes, and the log stays contiguous: each
/// abandoned write is recorded whole or not at all.
async fn survives_writes_abandoned_half_way(store: &Store) {
    let recorder = store.recorder(&unique_app("abandon")).await.unwrap();
    for i in 0..400u64 {
        let micros = (i * 37) % 3000;
        let events = vec![event(Uuid::new_v4(), 1, "A", b"1"), event(Uuid::new_v4(), 1, "A", b"2")];
        let _ = tokio::time::timeout(
            std::time::Duration::from_micros(micros),
            recorder.insert(0, events, None),
        )
        .await;
        recorder
            .insert(0, vec![event(Uuid::new_v4(), 1, "A", b"3")], None)
            .await
            .unwrap_or_else(|e| panic!("a write after an abandoned one (timeout {micros} µs) failed: {e}"));
    }
    let max = recorder.max_notification_id(0).await.unwrap();
    let all = recorder.select_notifications(0, 1, 100_000).await.unwrap();
    assert_eq!(all.len() as u64, max);
    assert!(all.iter().enumerate().all(|(i, n)| n.id == i as u64 + 1));
    // Abandoned pairs are whole: every "1" is followed by its "2".
    for (i, n) in all.iter().enumerate() {
        if n.event.state == b"1" {
            assert_eq!(all[i + 1].event.state, b"2");
        }
    }
}

async fn numbers_each_partition_on_its_own(store: &Store) {
    let app = unique_app("parts");
    let recorder = store.partitioned_recorder(&app, 3).await.unwrap();
    assert_eq!(recorder.partitions(), 3);
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(
        recorder.insert(0, vec![event(a, 1, "A", b"1")], None).await.unwrap(),
        vec![1]
    );
    assert_eq!(
        recorder
            .insert(2, vec![event(b, 1, "B", b"1"), event(c, 1, "C", b"1")], None)
            .await
            .unwrap(),
        vec![1, 2]
    );
    // Aggregates are shared: `a` goes on in another partition.
    assert_eq!(
        recorder.insert(2, vec![event(a, 2, "A", b"2")], None).await.unwrap(),
        vec![3]
    );
    assert_eq!(
        recorder.insert(0, vec![event(c, 2, "C", b"2")], None).await.unwrap(),
        vec![2]
    );
    let history = recorder.select_events(a, Versions::ALL).await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.originator_version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // A version taken in one partition is taken in all.
    let error = recorder
        .insert(1, vec![event(a, 2, "A", b"again")], None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Concurrency { version: 2, .. }), "{error}");

    let log = |partition| {
        let recorder = recorder.clone();
        async move {
            recorder
                .select_notifications(partition, 1, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|n| (n.partition, n.id, n.event.originator_id, n.event.originator_version))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(log(0).await, vec![(0, 1, a, 1), (0, 2, c, 2)]);
    assert_eq!(log(1).await, vec![]);
    assert_eq!(log(2).await, vec![(2, 1, b, 1), (2, 2, c, 1), (2, 3, a, 2)]);
    let heads = [0, 1, 2].map(|p| recorder.max_notification_id(p));
    let mut maxima = Vec::new();
    for head in heads {
        maxima.push(head.await.unwrap());
    }
    assert_eq!(maxima, vec![2, 0, 3]);

    // Tracking is per upstream partition.
    let upstream = unique_app("upstream");
    let in_partition = |partition, previous, position| Tracking {
        upstream: upstream.clone(),
        partition,
        previous,
        position,
        lease_epoch: None,
    };
    recorder.insert(1, vec![], Some(&in_partition(1, 0, 5))).await.unwrap();
    recorder.insert(0, vec![], Some(&in_partition(0, 0, 2))).await.unwrap();
    assert_eq!(recorder.tracking_position(&upstream, 1).await.unwrap(), 5);
    assert_eq!(recorder.tracking_position(&upstream, 0).await.unwrap(), 2);

    // A partition the log does not have is refused, and nothing is written.
    let error = recorder
        .insert(3, vec![event(b, 2, "B", b"2")], None)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::InvalidWrite { .. }), "{message}");
    assert!(
        message.contains("partition 3") && message.contains("3 partition(s)"),
        "{message}"
    );
    assert_eq!(recorder.select_events(b, Versions::ALL).await.unwrap().len(), 1);
}

async fn refuses_another_number_of_partitions(store: &Store) {
    let app = unique_app("parts");
    store.partitioned_recorder(&app, 2).await.unwrap();
    // Opened again with as many, or without saying: the log's partitions.
    assert_eq!(store.partitioned_recorder(&app, 2).await.unwrap().partitions(), 2);
    assert_eq!(store.recorder(&app).await.unwrap().partitions(), 2);

    let error = store.partitioned_recorder(&app, 4).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            Error::PartitionsChanged {
                stored: 2,
                asked: 4,
                ..
            }
        ),
        "{message}"
    );
    assert!(message.contains(&format!("`{app}`")), "{message}");
    assert!(message.contains("not re-partitioned in place"), "{message}");

    // A log made without partitions has one.
    let single = unique_app("single");
    assert_eq!(store.recorder(&single).await.unwrap().partitions(), 1);
    let error = store.partitioned_recorder(&single, 2).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::PartitionsChanged {
                stored: 1,
                asked: 2,
                ..
            }
        ),
        "{error}"
    );

    for bad in [0, eventsourcing::store::MAX_PARTITIONS + 1] {
        let error = store.partitioned_recorder(&unique_app("bad"), bad).await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidPartitions { asked, .. } if asked == bad),
            "{error}"
        );
    }
}

/// A write fenced by a lease epoch that the partition's tracking does not
/// hold fails and writes nothing: with `Error::LeaseLost` on the SQL stores
/// (which keep leases), and as an invalid write in memory (which keeps
/// none). With events and without.
async fn refuses_a_write_fenced_by_a_lease_it_does_not_hold(store: &Store) {
    let recorder = store.recorder(&unique_app("fenced")).await.unwrap();
    let upstream = unique_app("upstream");
    let fenced = Tracking {
        lease_epoch: Some(7),
        ..tracking(&upstream, 0, 1)
    };
    for events in [vec![event(Uuid::new_v4(), 1, "Dog.Registered", b"{}")], Vec::new()] {
        match recorder.insert(0, events, Some(&fenced)).await {
            Err(Error::LeaseLost {
                partition: 0,
                epoch: 7,
                found: 0,
                ..
            }) => assert_ne!(store.backend(), "memory"),
            Err(Error::InvalidWrite { reason, .. }) => {
                assert_eq!(store.backend(), "memory");
                assert!(reason.contains("lease"), "{reason}");
            }
            other => panic!("a write fenced by a lease not held: {other:?}"),
        }
        assert_eq!(recorder.max_notification_id(0).await.unwrap(), 0, "nothing written");
        assert_eq!(recorder.tracking_position(&upstream, 0).await.unwrap(), 0);
    }
}

/// Effects recorded with their command's events, in the outbox until
/// delivered: all or nothing with the events, completed once, failed with
/// a next time or parked, unparked, taken for a delivery once.
async fn keeps_an_outbox_written_with_the_events(store: &Store) {
    let recorder = store.recorder(&unique_app("outbox")).await.unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let notice = Outgoing::new("notify_admin", b"{\"threshold\":10}".to_vec(), a, 1);
    let mail = Outgoing::new("send_mail", vec![0, 1, 2], a, 1);
    let ids = recorder
        .insert_with_outbox(
            0,
            vec![event(a, 1, "Counter.Increased", b"{}")],
            OutboxWrite::add(vec![notice.clone(), mail.clone()]),
        )
        .await
        .unwrap();
    assert_eq!(ids, [1]);
    let now = Timestamp::now();
    let due = recorder.due_outgoing(now, 10).await.unwrap();
    let mut expected = vec![notice.clone(), mail.clone()];
    expected.sort_by_key(|o| (o.due_at, o.id));
    assert_eq!(due, expected, "every field kept");
    assert_eq!(
        recorder.due_outgoing(now, 1).await.unwrap().len(),
        1,
        "at most the limit"
    );

    // A write whose events conflict records no effect either.
    let lost = Outgoing::new("notify_admin", Vec::new(), a, 1);
    let error = recorder
        .insert_with_outbox(
            0,
            vec![
                event(b, 1, "Counter.Increased", b"{}"),
                event(a, 1, "Counter.Increased", b"{}"),
            ],
            OutboxWrite::add(vec![lost.clone()]),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Concurrency { .. }), "{error}");
    assert_eq!(recorder.due_outgoing(Timestamp::now(), 10).await.unwrap().len(), 2);
    assert_eq!(recorder.max_notification_id(0).await.unwrap(), 1);

    // Completed once: the second completion finds it gone.
    assert!(
        recorder
            .change_outgoing(OutgoingChange::Complete(notice.id))
            .await
            .unwrap()
    );
    assert!(
        !recorder
            .change_outgoing(OutgoingChange::Complete(notice.id))
            .await
            .unwrap()
    );

    // A failed delivery: due again later, with its attempts and error.
    let later = Timestamp::from_micros(Timestamp::now().as_micros() + 60_000_000);
    let failed = OutgoingChange::Fail {
        id: mail.id,
        attempts: 1,
        error: "HTTP 503".to_owned(),
        due_at: Some(later),
    };
    assert!(recorder.change_outgoing(failed).await.unwrap());
    assert!(recorder.due_outgoing(Timestamp::now(), 10).await.unwrap().is_empty());
    let retried = recorder.due_outgoing(later, 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(
        (retried[0].attempts, retried[0].last_error.as_deref()),
        (1, Some("HTTP 503"))
    );

    // Parked: listed, never due, until unparked.
    let parked = OutgoingChange::Fail {
        id: mail.id,
        attempts: 5,
        error: "HTTP 400".to_owned(),
        due_at: None,
    };
    assert!(recorder.change_outgoing(parked).await.unwrap());
    assert!(recorder.due_outgoing(later, 10).await.unwrap().is_empty());
    let listed = recorder.parked_outgoing().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].parked && listed[0].attempts == 5);
    let now = Timestamp::now();
    let unpark = OutgoingChange::Unpark {
        id: mail.id,
        due_at: now,
    };
    assert!(recorder.change_outgoing(unpark.clone()).await.unwrap());
    assert!(!recorder.change_outgoing(unpark).await.unwrap(), "not parked any more");
    assert_eq!(recorder.due_outgoing(now, 10).await.unwrap().len(), 1);
    assert!(recorder.parked_outgoing().await.unwrap().is_empty());

    // Taken for a delivery: by one of two dispatchers that listed it, and
    // not due until the claim runs out.
    let claim = OutgoingChange::Claim {
        id: mail.id,
        seen: now,
        until: later,
    };
    assert!(recorder.change_outgoing(claim.clone()).await.unwrap());
    assert!(
        !recorder.change_outgoing(claim).await.unwrap(),
        "the second dispatcher to take it is refused"
    );
    assert!(recorder.due_outgoing(Timestamp::now(), 10).await.unwrap().is_empty());
    let again = recorder.due_outgoing(later, 10).await.unwrap();
    assert_eq!(
        (again.len(), again[0].due_at),
        (1, later),
        "due again when the claim runs out"
    );
    let gone = OutgoingChange::Claim {
        id: notice.id,
        seen: now,
        until: later,
    };
    assert!(!recorder.change_outgoing(gone).await.unwrap(), "completed: gone");
    assert!(
        !recorder
            .change_outgoing(OutgoingChange::Complete(Uuid::new_v4()))
            .await
            .unwrap()
    );

    // A delivery consumes its message in the transaction of its events:
    // once. The second delivery fails and writes nothing.
    let c = Uuid::new_v4();
    let delivered = OutboxWrite::default().consuming(mail.id);
    let head = recorder.max_notification_id(0).await.unwrap();
    recorder
        .insert_with_outbox(0, vec![event(c, 1, "Counter.Increased", b"{}")], delivered.clone())
        .await
        .unwrap();
    assert!(recorder.due_outgoing(later, 10).await.unwrap().is_empty(), "consumed");
    let again = recorder
        .insert_with_outbox(0, vec![event(c, 2, "Counter.Increased", b"{}")], delivered)
        .await
        .unwrap_err();
    assert!(
        matches!(again, Error::EffectGone { id, .. } if id == mail.id),
        "{again}"
    );
    assert_eq!(
        recorder.max_notification_id(0).await.unwrap(),
        head + 1,
        "the second wrote nothing"
    );
}

eventsourcing_tests::on_every_backend!(
    keeps_an_outbox_written_with_the_events,
    refuses_a_write_fenced_by_a_lease_it_does_not_hold,
    numbers_each_partition_on_its_own,
    refuses_another_number_of_partitions,
    survives_writes_abandoned_half_way,
    fails_conflicting_writes_alone_among_concurrent_ones,
    stores_and_reads_an_aggregates_events,
    keeps_topic_state_and_timestamp_exactly,
    numbers_notifications_contiguously,
    rejects_an_existing_version_and_writes_nothing,
    rejects_one_version_twice_in_a_write,
    rejects_version_zero,
    rejects_state_versions_out_of_range,
    moves_tracking_forward_once_per_notification,
    reports_a_moved_tracking_position_before_an_existing_version,
    lets_one_of_two_concurrent_writers_win,
    keeps_applications_apart_and_creates_tables_once,
    round_trips_a_hand_written_aggregate,
);
