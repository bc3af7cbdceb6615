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
pub struct Orders;

#[policy(aggregates(Order))]
impl Orders {
    async fn reservation_created(&self, event: &Notified<ReservationCreated>, repo: &mut Repo<Self>) -> Result<()> {
        repo.get::<Order>(event.order).await?.reserve(event.originator_id);
        Ok(())
    }
}

#[derive(Default)]
pub struct Reservations;

#[policy(aggregates(Reservation))]
impl Reservations {
    async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
        repo.add(Reservation::create(event.originator_id));
        Ok(())
    }
}

fn main() {
    let _ = system!(Orders => Reservations);
}
