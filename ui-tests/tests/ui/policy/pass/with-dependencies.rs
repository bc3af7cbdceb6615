#![deny(warnings)]

// A process application without `Default`, holding its dependencies, is a
// process application all the same: `system!` checks it, and the runner
// is given an instance of it.

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
impl Orders {}

pub struct Reservations {
    pub stock: u32,
}

#[policy(aggregates(Reservation))]
impl Reservations {
    async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
        if self.stock > 0 {
            repo.add(Reservation::create(event.originator_id));
        }
        Ok(())
    }
}

fn main() {
    let _system = system!(Orders => Reservations);
    let _options = ProcessOptions::default().instance(Reservations { stock: 3 });
}
