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

    #[event(Paid, topc = "x")]
    async fn pay(self) -> bool {
        true
    }

    #[event(Refunded)]
    fn refund(&mut self, why: &str) {
        let _ = why;
    }
}

fn main() {}
