//! What a simulated run must satisfy: gapless logs, every notification
//! processed exactly once, and the same aggregates as an uninterrupted run.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::faults::Landed;
use crate::{Application, NotificationSource, Recorder, Result, System};

/// One stored event, without its timestamp: what must be the same in every
/// run (version, topic, state version, state).
pub(crate) type Recorded = (u64, String, u32, Vec<u8>);

/// Every application's aggregates, as their histories.
pub(crate) type Histories = BTreeMap<String, BTreeMap<Uuid, Vec<Recorded>>>;

/// Reads every log, checking that it is gapless and in order, and returns
/// the applications' aggregates and log heads.
pub(crate) async fn read_logs(apps: &[Application]) -> Result<(Histories, BTreeMap<String, u64>), String> {
    let mut histories = Histories::new();
    let mut heads = BTreeMap::new();
    for app in apps {
        let name = app.name().to_string();
        let aggregates = histories.entry(name.clone()).or_default();
        let mut next = 1;
        loop {
            let page = app.recorder().select_notifications(0, next, 1000).await.map_err(|e| {
                format!(
                    "reading the log of `{name}`: {}",
                    crate::process::worker::error_chain(&e)
                )
            })?;
            if page.is_empty() {
                break;
            }
            for notification in page {
                if notification.id != next {
                    return Err(format!(
                        "the log of `{name}` skips from {} to {}",
                        next - 1,
                        notification.id
                    ));
                }
                next += 1;
                let event = notification.event;
                aggregates.entry(event.originator_id).or_default().push((
                    event.originator_version,
                    event.topic.to_string(),
                    event.state_version,
                    event.state,
                ));
            }
        }
        heads.insert(name, next - 1);
    }
    Ok((histories, heads))
}

/// Checks that the commits that landed moved each tracking position from 0
/// to its upstream's head in steps that neither overlap (a notification
/// processed twice) nor leave a hole (one lost), and that the stores agree.
pub(crate) async fn check_exactly_once(
    system: &System,
    apps: &[Application],
    landed: &[Landed],
    heads: &BTreeMap<String, u64>,
) -> Result<(), String> {
    for app in apps {
        let name = app.name().to_string();
        for upstream in system.upstreams(app.name().as_str()) {
            let head = heads.get(upstream).copied().unwrap_or_default();
            let mut steps: Vec<&Landed> = landed
                .iter()
                .filter(|l| l.app == name && l.upstream == upstream && l.partition == 0)
                .collect();
            steps.sort_by_key(|l| l.previous);
            let mut reached = 0;
            for step in steps {
                if step.previous < reached {
                    return Err(format!(
                        "`{name}` processed notifications {}..={} of `{upstream}` twice: commits moved its position from {} and from {reached}",
                        step.previous + 1,
                        reached.min(step.position),
                        step.previous
                    ));
                }
                if step.previous > reached {
                    return Err(format!(
                        "`{name}` never processed notifications {}..={} of `{upstream}`",
                        reached + 1,
                        step.previous
                    ));
                }
                reached = step.position;
            }
            if reached != head {
                return Err(format!(
                    "`{name}` processed `{upstream}` up to {reached}, but its log ends at {head}"
                ));
            }
            let upstream_name = crate::AppName::new(upstream).map_err(|e| e.to_string())?;
            let recorded = app
                .recorder()
                .tracking_position(&upstream_name, 0)
                .await
                .map_err(|e| format!("reading the tracking of `{name}`: {e}"))?;
            if recorded != head {
                return Err(format!(
                    "the store says `{name}` processed `{upstream}` up to {recorded}, but its log ends at {head}"
                ));
            }
        }
    }
    Ok(())
}

/// The first difference between a run's aggregates and the uninterrupted
/// run's, if any.
pub(crate) fn compare(run: &Histories, reference: &Histories) -> Result<(), String> {
    for (app, expected) in reference {
        let empty = BTreeMap::new();
        let actual = run.get(app).unwrap_or(&empty);
        for (id, history) in expected {
            match actual.get(id) {
                None => return Err(format!("`{app}` lacks aggregate {id}, which the uninterrupted run has")),
                Some(found) if found != history => {
                    let at = found
                        .iter()
                        .zip(history)
                        .position(|(a, b)| a != b)
                        .unwrap_or(found.len().min(history.len()));
                    return Err(format!(
                        "aggregate {id} of `{app}` differs from the uninterrupted run's at event {} of {} (it has {}): {}",
                        at + 1,
                        history.len(),
                        found.len(),
                        describe(found.get(at))
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = actual.keys().find(|id| !expected.contains_key(id)) {
            return Err(format!(
                "`{app}` has aggregate {extra}, which the uninterrupted run does not"
            ));
        }
    }
    Ok(())
}

fn describe(event: Option<&Recorded>) -> String {
    match event {
        Some((version, topic, _, state)) => {
            format!("version {version} `{topic}` {}", String::from_utf8_lossy(state))
        }
        None => "nothing".to_owned(),
    }
}
