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
    unsafe fn pay(&mut self) {
        self.paid = true;
    }
}

fn main() {}
