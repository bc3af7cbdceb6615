use eventsourcing::prelude::*;

#[aggregate]
#[derive(Debug, Default)]
struct Order {
    paid: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Receipt;

#[aggregate]
impl Order {
    #[event(Created)]
    fn create() -> Self {
        Self::default()
    }

    #[event(Paid)]
    fn pay(&mut self, receipt: Receipt) {
        let _ = receipt;
        self.paid = true;
    }
}

fn main() {}
