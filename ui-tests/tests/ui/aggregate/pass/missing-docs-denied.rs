//! Generated public items carry docs: a crate that denies missing docs,
//! and warnings, compiles.
#![deny(missing_docs, warnings)]

/// The domain.
pub mod domain {
    use eventsourcing::prelude::*;

    /// Version 1 of `Opened` had no title.
    fn opened_from_v1(state: &mut serde_json::Value) {
        state["title"] = "untitled".into();
    }

    /// A ticket.
    #[aggregate]
    #[derive(Debug, Default, Clone, PartialEq)]
    pub struct Ticket {
        title: String,
        closed: bool,
    }

    #[aggregate]
    impl Ticket {
        /// Opens a ticket.
        #[event(Opened, topic = "tickets.opened", version = 2, upcasters(opened_from_v1))]
        pub fn open(title: String) -> Self {
            Self { title, closed: false }
        }

        /// Closes the ticket.
        #[event(Closed)]
        pub fn close(&mut self) {
            self.closed = true;
        }

        #[event(Renamed)]
        fn rename(&mut self, mut title: String) {
            title.truncate(80);
            self.title = title;
        }

        /// Renames the ticket, if the title is new.
        pub fn retitle(&mut self, title: &str) {
            if self.title != title {
                self.rename(title.to_owned());
            }
        }
    }
}

fn main() {
    use eventsourcing::Aggregate;
    let mut ticket = domain::Ticket::open("a".to_owned());
    ticket.retitle("b");
    ticket.close();
    assert_eq!(ticket.version(), 3);
}
