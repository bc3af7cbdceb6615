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

#[derive(Default)]
pub struct Orders;

#[policy(aggregates(Order))]
impl Orders {}

#[policy(aggregates(Reservation))]
impl Reservations {
    async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Orders>) -> Result<()> {
        repo.get::<Order>(event.originator_id).await?.reserve(event.originator_id);
        Ok(())
    }
}

fn main() {}
