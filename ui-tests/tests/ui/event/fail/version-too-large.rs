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

    #[event(Paid, version = 2147483648)]
    fn pay(&mut self) {
        self.paid = true;
    }
}

fn main() {}
