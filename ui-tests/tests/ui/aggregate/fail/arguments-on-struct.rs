use eventsourcing::prelude::*;

#[aggregate(name = "Purchase")]
#[derive(Default)]
struct Order {
    paid: bool,
}

#[aggregate]
impl Order {
    #[event(Created)]
    fn create() -> Self {
        Self::default()
    }
}

fn main() {}
