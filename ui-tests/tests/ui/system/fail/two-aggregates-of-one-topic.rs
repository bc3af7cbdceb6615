use eventsourcing::prelude::*;

/// Orders of the shop.
pub mod shop {
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
}

/// Orders of the old system: another `Order`, with the topic `Order.Created` too.
pub mod legacy {
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
}

#[derive(Default)]
pub struct Shop;

#[policy(aggregates(shop::Order))]
impl Shop {}

#[derive(Default)]
pub struct Legacy;

#[policy(aggregates(legacy::Order))]
impl Legacy {}

#[derive(Default)]
pub struct Audit;

#[policy(aggregates())]
impl Audit {
    async fn order_created(&self, _event: &Notified<shop::OrderCreated>, _repo: &mut Repo<Self>) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let _ = system!(Shop => Audit, Legacy => Audit);
}
