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
pub struct Invoice {
    pub order: Uuid,
}

#[aggregate]
impl Invoice {
    #[event(Issued)]
    pub fn issue(order: Uuid) -> Self {
        Self { order }
    }
}

#[derive(Default)]
pub struct Orders;

#[policy(aggregates(Order))]
impl Orders {}

/// Invoices in euros.
pub mod eu {
    use super::*;

    #[derive(Default)]
    pub struct Invoicing;

    #[policy(aggregates(Invoice))]
    impl Invoicing {
        async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
            repo.add(Invoice::issue(event.originator_id));
            Ok(())
        }
    }
}

/// Invoices in dollars: another type, with the same name.
pub mod us {
    use super::*;

    #[derive(Default)]
    pub struct Invoicing;

    #[policy(aggregates(Invoice))]
    impl Invoicing {
        async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
            repo.add(Invoice::issue(event.originator_id));
            Ok(())
        }
    }
}

fn main() {
    let _ = system!(Orders => eu::Invoicing, Orders => us::Invoicing);
}
