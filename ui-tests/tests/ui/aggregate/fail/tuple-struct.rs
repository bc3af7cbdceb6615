use eventsourcing::prelude::*;

#[aggregate]
struct Order(bool);

fn main() {}
