//! A notification whose topic no aggregate of its upstream records (an
//! event type removed or renamed upstream, or a row written by something
//! else) is never passed over unseen: a warning names it, or, if the
//! application is told to, processing stops there.

use eventsourcing::prelude::*;
use eventsourcing::{Error, NotificationSource, Recorder, StoredEvent, Timestamp, UnknownTopics};

#[aggregate]
#[derive(Debug, Default)]
pub struct Ticket {}

#[aggregate]
impl Ticket {
    #[event(Opened)]
    pub fn open() -> Self {
        Self {}
    }
}

#[aggregate]
#[derive(Debug, Default)]
pub struct Reply {}

#[aggregate]
impl Reply {
    #[event(Sent)]
    pub fn send() -> Self {
        Self {}
    }
}

#[derive(Default)]
struct Tickets;

#[policy(aggregates(Ticket))]
impl Tickets {}

#[derive(Default)]
struct Replies;

#[policy(aggregates(Reply))]
impl Replies {
    async fn ticket_opened(&self, _ticket: &Notified<TicketOpened>, repo: &mut Repo<Self>) -> Result<()> {
        repo.add(Reply::send());
        Ok(())
    }
}

/// Writes a notification of a topic `Tickets` does not record, then a
/// ticket opened after it, straight into the upstream log.
async fn write_unknown_then_known(runner: &Runner) {
    let tickets = runner.app::<Tickets>().unwrap();
    let unknown = StoredEvent {
        originator_id: Uuid::now_v7(),
        originator_version: 1,
        timestamp: Timestamp::now(),
        topic: "Ticket.Escalated".into(),
        state_version: 1,
        state: b"{}".to_vec(),
    };
    tickets.recorder().insert(0, vec![unknown], None).await.unwrap();
    tickets.save(&mut Ticket::open()).await.unwrap();
}

async fn replies(runner: &Runner) -> (u64, u64) {
    let replies = runner.app::<Replies>().unwrap();
    let tickets = runner.app::<Tickets>().unwrap();
    (
        replies.recorder().max_notification_id(0).await.unwrap(),
        replies.recorder().tracking_position(tickets.name(), 0).await.unwrap(),
    )
}

async fn warns_and_passes_over_by_default(store: &Store) {
    let (_guard, warnings) = eventsourcing_tests::capture_warnings();
    let runner = Runner::single_threaded(system!(Tickets => Replies), store, ProcessOptions::default())
        .await
        .unwrap();
    write_unknown_then_known(&runner).await;
    runner.wait_until_quiet().await.unwrap();
    // The ticket after it was answered; the unknown one was passed over.
    assert_eq!(replies(&runner).await, (1, 2));
    let warnings = warnings.lock().unwrap();
    let warning = warnings
        .iter()
        .find(|w| w.contains("Ticket.Escalated"))
        .unwrap_or_else(|| panic!("a warning names the topic: {warnings:?}"));
    for part in [
        "app=Replies",
        "upstream=Tickets",
        "notification_id=1",
        "UnknownTopics::Stop",
    ] {
        assert!(warning.contains(part), "`{part}` in {warning}");
    }
}

async fn stops_there_when_told_to(store: &Store) {
    let options = ProcessOptions::default().unknown_topics(UnknownTopics::Stop);
    let runner = Runner::single_threaded(system!(Tickets => Replies), store, options)
        .await
        .unwrap();
    write_unknown_then_known(&runner).await;
    match runner.wait_until_quiet().await.unwrap_err() {
        Error::Processing {
            app,
            notification_id,
            topic,
            source,
            ..
        } => {
            assert_eq!(
                (app.as_str(), notification_id, topic.as_str()),
                ("Replies", 1, "Ticket.Escalated")
            );
            assert!(
                source.to_string().contains("no aggregate of `Tickets` records"),
                "{source}"
            );
        }
        other => panic!("expected a processing error, got {other}"),
    }
    assert_eq!(replies(&runner).await, (0, 0), "nothing after it was processed");
}

eventsourcing_tests::on_every_fresh_backend!(warns_and_passes_over_by_default, stops_there_when_told_to);
