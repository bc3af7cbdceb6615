//! A page of notifications packed into one JSON array by SQLite
//! (`json_group_array`), and unpacked here: one row per page instead of one
//! per notification crossing from sqlx's SQLite thread.
//!
//! Each element is `[notification_id, hex(originator_id), originator_version,
//! recorded_at, topic, state_version, hex(state)]`.

use std::borrow::Cow;

use serde::Deserialize;
use uuid::Uuid;

use crate::topics::Topic;
use crate::{Notification, StoredEvent, Timestamp};

/// One notification as SQLite packed it; strings borrow from the page.
#[derive(Deserialize)]
struct Packed<'a>(
    u64,
    &'a str,
    u64,
    i64,
    // A topic with characters JSON escapes cannot borrow.
    #[serde(borrow)] Cow<'a, str>,
    u32,
    &'a str,
);

/// The notifications of `partition` in a packed page.
pub(super) fn notifications(page: &str, partition: u32) -> Result<Vec<Notification>, String> {
    let rows: Vec<Packed<'_>> = serde_json::from_str(page).map_err(|e| e.to_string())?;
    rows.into_iter()
        .map(
            |Packed(id, originator_id, version, recorded_at, topic, state_version, state)| {
                let mut uuid = [0; 16];
                if originator_id.len() != 32 {
                    return Err(format!(
                        "notification {id}: an originator id of {} hex digits",
                        originator_id.len()
                    ));
                }
                unhex(originator_id, &mut uuid).map_err(|e| format!("notification {id}: {e}"))?;
                let mut bytes = vec![0; state.len() / 2];
                unhex(state, &mut bytes).map_err(|e| format!("notification {id}: {e}"))?;
                Ok(Notification {
                    id,
                    partition,
                    event: StoredEvent {
                        originator_id: Uuid::from_bytes(uuid),
                        originator_version: version,
                        timestamp: Timestamp::from_micros(recorded_at),
                        topic: Topic::new(&topic),
                        state_version,
                        state: bytes,
                    },
                })
            },
        )
        .collect()
}

/// Decodes SQLite's `hex()` (upper case) into `out`, which is half as long.
fn unhex(text: &str, out: &mut [u8]) -> Result<(), String> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'A'..=b'F' => Some(c - b'A' + 10),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if text.len() != out.len() * 2 {
        return Err(format!("{} hex digits for {} bytes", text.len(), out.len()));
    }
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(high), Some(low)) => *byte = high << 4 | low,
            _ => return Err(format!("`{}` is not a hex byte", String::from_utf8_lossy(pair))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_a_page_with_escaped_topics_and_binary_state() {
        let page = r#"[[7,"0193A2F05C0070008000000000000001",2,1700000000000000,"Odd \"topic\"",3,"00FF7B"]]"#;
        let n = &notifications(page, 0).unwrap()[0];
        assert_eq!((n.id, n.partition), (7, 0));
        assert_eq!(
            n.event.originator_id,
            Uuid::from_u128(0x0193_a2f0_5c00_7000_8000_0000_0000_0001)
        );
        assert_eq!((n.event.originator_version, n.event.state_version), (2, 3));
        assert_eq!(n.event.timestamp, Timestamp::from_micros(1_700_000_000_000_000));
        assert_eq!(n.event.topic, "Odd \"topic\"");
        assert_eq!(n.event.state, [0x00, 0xff, 0x7b]);
        assert!(notifications("[]", 0).unwrap().is_empty());
    }

    /// Through a real SQLite file: what is written comes back out, an
    /// empty state and a topic JSON must escape included.
    #[test]
    fn round_trips_through_sqlite() {
        use crate::{AppName, NotificationSource, Recorder, Store, Versions};
        let dir = std::env::temp_dir().join(format!("eventsourcing-packed-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("packed.db").display());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = Store::open(&url).await.unwrap();
            let recorder = store.recorder(&AppName::new("packed").unwrap()).await.unwrap();
            let id = Uuid::now_v7();
            let written: Vec<_> = [("A \"quoted\\ topic\"\n", vec![]), ("B", vec![0, 255, b'"'])]
                .into_iter()
                .zip(1..)
                .map(|((topic, state), version)| StoredEvent {
                    originator_id: id,
                    originator_version: version,
                    timestamp: Timestamp::from_micros(-5),
                    topic: Topic::new(topic),
                    state_version: 7,
                    state,
                })
                .collect();
            assert_eq!(recorder.insert(0, written.clone(), None).await.unwrap(), [1, 2]);
            assert_eq!(recorder.select_events(id, Versions::ALL).await.unwrap(), written);
            let read: Vec<_> = recorder
                .select_notifications(0, 1, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|n| (n.id, n.event))
                .collect();
            assert_eq!(read, [(1, written[0].clone()), (2, written[1].clone())]);
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_what_sqlite_would_not_have_packed() {
        assert!(notifications(r#"[[1,"00",1,0,"T",1,""]]"#, 0).is_err());
        assert!(notifications(r#"[[1,"0193A2F05C0070008000000000000001",1,0,"T",1,"0G"]]"#, 0).is_err());
        assert!(notifications("not json", 0).is_err());
    }
}
