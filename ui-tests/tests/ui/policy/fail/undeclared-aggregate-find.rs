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

#[aggregate]
#[derive(Debug, Default)]
pub struct Payment {}

#[aggregate]
impl Payment {
    #[event(Created)]
    pub fn create() -> Self {
        Self {}
    }
}

#[derive(Default)]
pub struct Reservations;

/// Declares `Reservation` and `Payment`, then looks for the order.
#[policy(aggregates(Reservation, Payment))]
impl Reservations {
    async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
        if repo.find::<Order>(event.originator_id).await?.is_some() {
            repo.add(Reservation::create(event.originator_id));
        }
        Ok(())
    }
}

fn main() {}
