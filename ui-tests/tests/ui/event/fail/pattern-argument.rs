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
    fn pay(&mut self, (amount, currency): (u64, String)) {
        let _ = (amount, currency);
        self.paid = true;
    }
}

fn main() {}
