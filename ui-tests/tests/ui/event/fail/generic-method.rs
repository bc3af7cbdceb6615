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
    fn pay<T: Into<String>>(&mut self, by: T) {
        let _ = by.into();
        self.paid = true;
    }
}

fn main() {}
