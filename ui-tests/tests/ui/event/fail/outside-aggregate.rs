use eventsourcing::prelude::*;

struct Order;

impl Order {
    #[event(Created)]
    fn create() -> Self {
        Order
    }
}

fn main() {
    let _ = Order::create();
}
