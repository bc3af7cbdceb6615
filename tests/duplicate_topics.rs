//! Two aggregates that claim one topic: a clear error at start-up, when the
//! first application opens, naming both event types by their module paths.
//! (Its own test binary: the topic register is program-wide.)
//!
//! Here two aggregates are called `Order`, in two modules, and both have a
//! `Created` event: both claim `Order.Created`.

use eventsourcing::prelude::*;
use eventsourcing::{Error, topics};

mod shop {
    use eventsourcing::prelude::*;

    #[aggregate]
    #[derive(Debug, Default)]
    pub struct Order {}

    #[aggregate]
    impl Order {
        #[event(Created)]
        pub fn create() -> Self {
            Self {}
        }
    }
}

mod legacy {
    use eventsourcing::prelude::*;

    #[aggregate]
    #[derive(Debug, Default)]
    pub struct Order {}

    #[aggregate]
    impl Order {
        #[event(Created)]
        pub fn create() -> Self {
            Self {}
        }
    }
}

#[tokio::test]
async fn opening_an_application_names_both_claimants_by_their_paths() {
    let store = Store::open("memory:").await.unwrap();
    let err = Application::open(&store, "billing").await.unwrap_err();
    match &err {
        Error::DuplicateTopic { topic, first, second } => {
            assert_eq!(
                (*topic, first.as_str(), second.as_str()),
                (
                    "Order.Created",
                    "duplicate_topics::legacy::Order::OrderCreated",
                    "duplicate_topics::shop::Order::OrderCreated"
                )
            );
        }
        other => panic!("expected a duplicate topic error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("`Order.Created`")
            && message.contains("`duplicate_topics::legacy::Order::OrderCreated`")
            && message.contains("`duplicate_topics::shop::Order::OrderCreated`")
            && message.contains("topic = "),
        "{message}"
    );
    assert!(topics::check().is_err(), "the answer stays the same");
    // Both are still usable as aggregates; only starting an application is refused.
    assert_eq!(shop::Order::create().version() + legacy::Order::create().version(), 2);
    assert_eq!(
        (<shop::Order as Aggregate>::PATH, <legacy::Order as Aggregate>::PATH),
        ("duplicate_topics::shop::Order", "duplicate_topics::legacy::Order")
    );
}
