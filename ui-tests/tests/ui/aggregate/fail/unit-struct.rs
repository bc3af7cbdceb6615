use eventsourcing::prelude::*;

#[aggregate]
struct Order;

fn main() {}
