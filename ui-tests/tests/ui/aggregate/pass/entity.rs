//! An entity exists before its first event: its aggregate needs no
//! creation event, and its first event may be any of them.

use eventsourcing::prelude::*;

#[aggregate]
#[derive(Debug, Default)]
struct Counter {
    count: u64,
}

#[aggregate(entity)]
impl Counter {
    #[event(Increased)]
    fn increase(&mut self, by: u64) {
        self.count += by;
    }
}

fn main() {
    let mut counter = Counter::default();
    counter.increase(2);
    assert_eq!((counter.count, counter.version()), (2, 1));
}
