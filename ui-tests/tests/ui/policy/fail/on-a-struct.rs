use eventsourcing::prelude::*;

#[aggregate]
#[derive(Debug, Default)]
pub struct Order {}

#[aggregate]
impl Order {
    #[event(Created)]
    pub fn create() -> Self {
        Self {}
    }

    #[event(Reserved)]
    pub fn reserve(&mut self, reservation: Uuid) {}
}

#[aggregate]
#[derive(Debug, Default)]
pub struct Reservation {
    pub order: Uuid,
}

#[aggregate]
impl Reservation {
    #[event(Created)]
    pub fn create(order: Uuid) -> Self {
        Self { order }
    }
}

#[policy(aggregates(Reservation))]
#[derive(Default)]
pub struct Reservations;

fn main() {}
