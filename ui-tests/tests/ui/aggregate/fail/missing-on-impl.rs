use eventsourcing::prelude::*;

#[aggregate]
#[derive(Debug, Default)]
struct Order {
    paid: bool,
}

impl Order {
    fn pay(&mut self) {
        self.paid = true;
    }
}

fn main() {
    Order::default().pay();
}
