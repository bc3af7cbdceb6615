use eventsourcing::prelude::*;

#[aggregate]
#[derive(Debug, Default)]
struct Counter {
    count: u64,
}

#[aggregate(entity, entity)]
impl Counter {
    #[event(Increased)]
    fn increase(&mut self) {
        self.count += 1;
    }
}

fn main() {}
