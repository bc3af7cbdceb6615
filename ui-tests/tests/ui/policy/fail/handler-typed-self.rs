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

#[derive(Default)]
pub struct Reservations;

#[policy(aggregates(Reservation))]
impl Reservations {
    async fn order_created(self: &Self, _event: &Notified<OrderCreated>, _repo: &mut Repo<Self>) -> Result<()> {
        Ok(())
    }
}

fn main() {}
