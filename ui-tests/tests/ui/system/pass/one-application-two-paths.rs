//! One type named by two paths is one application; one aggregate type
//! recorded by two applications is fine.
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
pub struct Payment {}

#[aggregate]
impl Payment {
    #[event(Created)]
    pub fn create() -> Self {
        Self {}
    }
}

#[aggregate]
#[derive(Debug, Default)]
pub struct Invoice {
    pub about: Uuid,
}

#[aggregate]
impl Invoice {
    #[event(Issued)]
    pub fn issue(about: Uuid) -> Self {
        Self { about }
    }
}

#[derive(Default)]
pub struct Orders;

#[policy(aggregates(Order))]
impl Orders {}

/// Takes payments, and records orders too.
#[derive(Default)]
pub struct Payments;

#[policy(aggregates(Payment, Order))]
impl Payments {}

/// Invoices orders and payments: follows both, named two ways.
#[derive(Default)]
pub struct Invoicing;

#[policy(aggregates(Invoice))]
impl Invoicing {
    async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
        repo.add(Invoice::issue(event.originator_id));
        Ok(())
    }

    async fn payment_created(&self, event: &Notified<PaymentCreated>, repo: &mut Repo<Invoicing>) -> Result<()> {
        repo.add(Invoice::issue(event.originator_id));
        Ok(())
    }
}

mod nested {
    pub use super::Invoicing as Billing;
}

fn main() {
    let system = system!(Orders => Invoicing, Payments => self::Invoicing, Orders => nested::Billing);
    assert_eq!(system.apps().collect::<Vec<_>>(), ["Orders", "Invoicing", "Payments"]);
    assert_eq!(system.upstreams("Invoicing").collect::<Vec<_>>(), ["Orders", "Payments"]);
}
