use eventsourcing::prelude::*;

#[aggregate]
struct Order<T> {
    item: T,
}

fn main() {}
