//! Notification log sections and the reader, on every backend.

use eventsourcing::{Error, NotificationLog, Recorder, Store, StoredEvent, Timestamp};
use eventsourcing_tests::unique_app;
use uuid::Uuid;

/// Records `count` events of one aggregate, one transaction each.
async fn record(recorder: &impl Recorder, id: Uuid, versions: std::ops::RangeInclusive<u64>) {
    for version in versions {
        let event = StoredEvent {
            originator_id: id,
            originator_version: version,
            timestamp: Timestamp::now(),
            topic: "Item.Added".into(),
            state_version: 1,
            state: format!("{version}").into_bytes(),
        };
        recorder.insert(0, vec![event], None).await.unwrap();
    }
}

fn ids(section: &eventsourcing::Section) -> Vec<u64> {
    section.items.iter().map(|n| n.id).collect()
}

async fn links_sections(store: &Store) {
    let recorder = store.recorder(&unique_app("log")).await.unwrap();
    let log = NotificationLog::new(recorder.clone()).with_section_size(5).unwrap();

    let empty = log.section("current").await.unwrap();
    assert_eq!((empty.id.as_str(), empty.items.len()), ("1,5", 0));
    assert_eq!((empty.previous_id, empty.next_id), (None, None));

    let id = Uuid::new_v4();
    record(&recorder, id, 1..=9).await;

    let current = log.section("current").await.unwrap();
    assert_eq!(current.id, "6,10");
    assert_eq!(ids(&current), [6, 7, 8, 9]);
    assert_eq!(
        (current.previous_id.as_deref(), current.next_id.as_deref()),
        (Some("1,5"), None)
    );

    let first = log.section("1,5").await.unwrap();
    assert_eq!(ids(&first), [1, 2, 3, 4, 5]);
    assert_eq!(
        (first.previous_id.as_deref(), first.next_id.as_deref()),
        (None, Some("6,10"))
    );
    assert_eq!(first.items[0].event.originator_id, id);
    assert_eq!(first.items[4].event.state, b"5");

    // A wider request is answered with the aligned section of the log's size.
    assert_eq!(log.section("1,10").await.unwrap().id, "1,5");
    assert_eq!(log.section("7,8").await.unwrap().id, "6,10");

    // A full current section links nowhere until a later notification
    // lands: no link points past the end of the log.
    record(&recorder, id, 10..=10).await;
    let full = log.section("current").await.unwrap();
    assert_eq!((full.id.as_str(), ids(&full).len(), full.next_id), ("6,10", 5, None));
    assert_eq!(log.section("6,10").await.unwrap().next_id, None);
    let beyond = log.section("11,15").await.unwrap();
    assert_eq!(
        (beyond.items.len(), beyond.previous_id.as_deref(), beyond.next_id),
        (0, Some("6,10"), None)
    );
    assert_eq!(log.section("current").await.unwrap().id, "6,10");
    record(&recorder, id, 11..=11).await;
    assert_eq!(log.section("6,10").await.unwrap().next_id.as_deref(), Some("11,15"));
    assert_eq!(log.section("current").await.unwrap().id, "11,15");
}

async fn rejects_ids_past_the_largest_without_overflowing(store: &Store) {
    let recorder = store.recorder(&unique_app("huge")).await.unwrap();
    record(&recorder, Uuid::new_v4(), 1..=3).await;
    let log = NotificationLog::new(recorder).with_section_size(10).unwrap();
    let max = eventsourcing::log::MAX_NOTIFICATION_ID;
    for id in [
        format!("{},{}", u64::MAX - 5, u64::MAX),
        format!("{},{}", max, max + 1),
        format!("{},{}", u64::MAX, u64::MAX),
    ] {
        let message = log.section(&id).await.unwrap_err().to_string();
        assert!(
            message.contains(&format!("notification ids end at {max}")),
            "{id}: {message}"
        );
    }
    // The last possible section is cut short at the largest id, and has no next.
    let last = log.section(&format!("{max},{max}")).await.unwrap();
    assert_eq!(
        (last.id, last.items.len(), last.next_id),
        (format!("{},{max}", max - 6), 0, None)
    );

    let mut reader = log.reader();
    let err = reader.seek(u64::MAX).unwrap_err();
    assert!(matches!(err, Error::LogPosition { position: u64::MAX, .. }), "{err:?}");
    assert!(err.to_string().contains("past the largest notification id"), "{err}");
    assert_eq!(reader.position(), 0, "a refused seek leaves the reader where it was");
    reader.seek(max).unwrap();
    assert!(reader.next().await.unwrap().is_none());
    reader.seek(max - 1).unwrap();
    assert!(reader.next().await.unwrap().is_none());
    reader.seek(1).unwrap();
    assert_eq!(reader.next().await.unwrap().map(|n| n.id), Some(2));
}

async fn rejects_malformed_section_ids(store: &Store) {
    let recorder = store.recorder(&unique_app("bad")).await.unwrap();
    let log = NotificationLog::new(recorder)
        .with_section_size(10)
        .unwrap()
        .with_max_section_size(1000)
        .unwrap();
    for (id, says) in [
        ("abc", "expected `current` or `first,last`"),
        ("", "expected `current` or `first,last`"),
        ("10,1", "the last id 1 is before the first id 10"),
        ("0,9", "notification ids start at 1"),
        ("1,100000000", "a section spans at most 1000 notifications"),
        ("x,10", "the first id `x` is not a whole number"),
        ("1,-5", "the last id `-5` is not a whole number"),
        ("1,2,3", "the last id `2,3` is not a whole number"),
    ] {
        let err = log.section(id).await.unwrap_err();
        assert!(
            matches!(&err, Error::SectionId { id: given, .. } if given == id),
            "{id}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!("`{id}`")) && message.contains(says),
            "{id}: {message}"
        );
    }
    assert!(
        log.section("1,1000").await.is_ok(),
        "a request as wide as the maximum is allowed"
    );
}

async fn reads_in_order_from_any_position(store: &Store) {
    let recorder = store.recorder(&unique_app("reader")).await.unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    record(&recorder, a, 1..=12).await;
    record(&recorder, b, 1..=11).await;

    let mut reader = NotificationLog::new(recorder.clone())
        .with_section_size(5)
        .unwrap()
        .reader();
    let all = reader.read_to_end().await.unwrap();
    assert_eq!(
        all.iter().map(|n| n.id).collect::<Vec<_>>(),
        (1..=23).collect::<Vec<_>>()
    );
    assert_eq!(reader.position(), 23);
    assert!(reader.next().await.unwrap().is_none());

    // A reader that has caught up yields what is recorded later.
    record(&recorder, b, 12..=13).await;
    assert_eq!(reader.next().await.unwrap().map(|n| n.id), Some(24));
    assert_eq!(
        reader.next().await.unwrap().map(|n| (n.id, n.event.originator_version)),
        Some((25, 13))
    );
    assert!(reader.next().await.unwrap().is_none());

    // Seeking moves the position, within or across sections.
    reader.seek(7).unwrap();
    assert_eq!(reader.next().await.unwrap().map(|n| n.id), Some(8));
    assert_eq!(reader.position(), 8);
    reader.seek(20).unwrap();
    let rest = reader.read_to_end().await.unwrap();
    assert_eq!(rest.iter().map(|n| n.id).collect::<Vec<_>>(), [21, 22, 23, 24, 25]);
    reader.seek(0).unwrap();
    assert_eq!(reader.next().await.unwrap().map(|n| n.id), Some(1));
}

async fn rejects_bad_section_sizes(store: &Store) {
    let recorder = store.recorder(&unique_app("sizes")).await.unwrap();
    assert!(NotificationLog::new(recorder.clone()).with_section_size(0).is_err());
    assert!(NotificationLog::new(recorder.clone()).with_section_size(1001).is_err());
    let log = NotificationLog::new(recorder).with_section_size(50).unwrap();
    assert!(log.clone().with_max_section_size(49).is_err());
    assert_eq!(log.with_max_section_size(50).unwrap().section_size(), 50);
}

eventsourcing_tests::on_every_backend!(
    links_sections,
    rejects_malformed_section_ids,
    reads_in_order_from_any_position,
    rejects_bad_section_sizes,
    rejects_ids_past_the_largest_without_overflowing
);
