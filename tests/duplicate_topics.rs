//! Two aggregates that claim one topic: a clear error at start-up, when the
//! first application opens. (Its own test binary: the topic register is
//! program-wide.)

use eventsourcing::prelude::*;
use eventsourcing::{Error, topics};

#[aggregate]
#[derive(Debug, Default)]
struct Invoice {}

#[aggregate]
impl Invoice {
    #[event(Issued, topic = "billing.issued")]
    fn issue() -> Self {
        Self {}
    }
}

#[aggregate]
#[derive(Debug, Default)]
struct Bill {}

#[aggregate]
impl Bill {
    #[event(Sent, topic = "billing.issued")]
    fn send() -> Self {
        Self {}
    }
}

#[tokio::test]
async fn opening_an_application_names_both_claimants() {
    let store = Store::open("memory:").await.unwrap();
    let err = Application::open(&store, "billing").await.unwrap_err();
    match &err {
        Error::DuplicateTopic { topic, first, second } => {
            assert_eq!(
                (*topic, first.as_str(), second.as_str()),
                ("billing.issued", "Bill::BillSent", "Invoice::InvoiceIssued")
            );
        }
        other => panic!("expected a duplicate topic error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("`billing.issued`") && message.contains("topic = "),
        "{message}"
    );
    assert!(topics::check().is_err(), "the answer stays the same");
    // Both are still usable as aggregates; only starting an application is refused.
    assert_eq!(Invoice::issue().version() + Bill::send().version(), 2);
}
