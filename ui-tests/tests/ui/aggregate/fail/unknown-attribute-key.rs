use eventsourcing::prelude::*;

#[aggregate]
#[derive(Debug, Default)]
struct Order {
    paid: bool,
}

#[aggregate(nam = "Purchase")]
impl Order {
    #[event(Created)]
    fn create() -> Self {
        Self::default()
    }
}

fn main() {}
