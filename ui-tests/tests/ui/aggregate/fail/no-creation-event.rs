use eventsourcing::prelude::*;

#[aggregate]
#[derive(Debug, Default)]
struct Order {
    paid: bool,
}

#[aggregate]
impl Order {
    #[event(Paid)]
    fn pay(&mut self) {
        self.paid = true;
    }
}

fn main() {}
