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

    #[event(Paid)]
    fn pay(self: &mut Self) {
        self.paid = true;
    }
}

fn main() {}
