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
    fn pay(&mut self, #[id] id: uuid::Uuid) {
        let _ = id;
        self.paid = true;
    }
}

fn main() {}
