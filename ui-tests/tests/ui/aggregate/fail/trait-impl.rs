use eventsourcing::prelude::*;

#[aggregate]
#[derive(Debug, Default)]
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

#[aggregate]
impl Clone for Order {
    fn clone(&self) -> Self {
        Self::default()
    }
}

fn main() {}
