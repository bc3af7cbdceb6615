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
#[derive(Default)]
pub struct EuInvoicing;

#[policy(aggregates(Invoice), name = "billing")]
impl EuInvoicing {
    async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
        repo.add(Invoice::issue(event.originator_id));
        Ok(())
    }
}

/// Invoices in dollars: another type, given the same name but for case,
/// which names the same tables.
#[derive(Default)]
pub struct UsInvoicing;

#[policy(aggregates(Invoice), name = "Billing")]
impl UsInvoicing {
    async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
        repo.add(Invoice::issue(event.originator_id));
        Ok(())
    }
}

fn main() {
    let _ = system!(Orders => EuInvoicing, Orders => UsInvoicing);
}
