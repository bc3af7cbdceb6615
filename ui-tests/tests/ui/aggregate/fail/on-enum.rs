use eventsourcing::prelude::*;

#[aggregate]
enum Order {
    Open,
    Paid,
}

fn main() {}
