//! Two types of one application name in a system built by hand (which
//! `system!` would reject while compiling): a runner refuses to start, and
//! names both types. They would share tables and tracking, and one of them
//! would process nothing.

use eventsourcing::prelude::*;
use eventsourcing::{Error, RunnerKind};

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
    order: Uuid,
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

/// Two `Invoicing` types, in two modules.
macro_rules! invoicing {
    ($($attr:tt)*) => {
        #[derive(Default)]
        pub struct Invoicing;

        #[policy($($attr)*)]
        impl Invoicing {
            async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
                repo.add(Invoice::issue(event.originator_id));
                Ok(())
            }
        }
    };
}

mod eu {
    use super::*;
    invoicing!(aggregates(Invoice));
}

mod us {
    use super::*;
    invoicing!(aggregates(Invoice));
}

/// Two types that both say `name = "billing"`.
mod billing {
    use super::*;

    pub mod a {
        use super::*;
        invoicing!(aggregates(Invoice), name = "billing");
    }

    pub mod b {
        use super::*;
        invoicing!(aggregates(Invoice), name = "billing");
    }

    /// Names the same tables as `billing`: table names ignore case.
    pub mod c {
        use super::*;
        invoicing!(aggregates(Invoice), name = "Billing");
    }
}

fn assert_duplicate(result: eventsourcing::Result<Runner>, name: &str, first: &str, second: &str) {
    let error = match result {
        Err(error) => error,
        Ok(_) => panic!("a system with two applications named `{name}` started"),
    };
    match &error {
        Error::DuplicateApp {
            name: found,
            first: found_first,
            second: found_second,
        } => assert_eq!((*found, *found_first, *found_second), (name, first, second)),
        other => panic!("expected a duplicate application error, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&format!("`{first}`"))
            && message.contains(&format!("`{second}`"))
            && message.contains("#[policy(name = "),
        "{message}"
    );
}

#[tokio::test]
async fn every_runner_refuses_two_types_of_one_name() {
    let store = Store::open("memory:").await.unwrap();
    let system = || {
        System::new()
            .follow::<Orders, eu::Invoicing>()
            .follow::<Orders, us::Invoicing>()
    };
    let (first, second) = ("app_names::eu::Invoicing", "app_names::us::Invoicing");
    let options = ProcessOptions::default;
    assert_duplicate(
        Runner::single_threaded(system(), &store, options()).await,
        "Invoicing",
        first,
        second,
    );
    assert_duplicate(
        Runner::multi_task(system(), &store, options()).await,
        "Invoicing",
        first,
        second,
    );
    for kind in [RunnerKind::SingleThreaded, RunnerKind::MultiTask] {
        assert_duplicate(
            Runner::start(kind, system(), &store, options()).await,
            "Invoicing",
            first,
            second,
        );
    }
    assert!(system().check().is_err());
}

#[tokio::test]
async fn a_runner_refuses_two_types_that_choose_one_name() {
    let store = Store::open("memory:").await.unwrap();
    let system = System::new()
        .app::<billing::a::Invoicing>()
        .app::<Orders>()
        .app::<billing::b::Invoicing>();
    assert_duplicate(
        Runner::single_threaded(system, &store, ProcessOptions::default()).await,
        "billing",
        "app_names::billing::a::Invoicing",
        "app_names::billing::b::Invoicing",
    );
}

#[tokio::test]
async fn a_runner_refuses_two_names_that_differ_in_case_only() {
    let store = Store::open("memory:").await.unwrap();
    let system = System::new()
        .follow::<Orders, billing::a::Invoicing>()
        .follow::<Orders, billing::c::Invoicing>();
    assert_duplicate(
        Runner::multi_task(system, &store, ProcessOptions::default()).await,
        "billing",
        "app_names::billing::a::Invoicing",
        "app_names::billing::c::Invoicing",
    );
}

#[tokio::test]
async fn one_type_named_twice_is_one_application() {
    let store = Store::open("memory:").await.unwrap();
    let system = System::new()
        .follow::<Orders, eu::Invoicing>()
        .app::<eu::Invoicing>()
        .follow::<Orders, eu::Invoicing>();
    assert_eq!(system.apps().collect::<Vec<_>>(), ["Orders", "Invoicing"]);
    system.check().unwrap();
    let runner = Runner::single_threaded(system, &store, ProcessOptions::default())
        .await
        .unwrap();
    let mut order = Order::create();
    runner.save::<Orders>(&mut order).await.unwrap().processed().unwrap();
    // `Runner::app` finds the application by its type, not by its name only.
    assert!(runner.app::<us::Invoicing>().is_err());
    let invoices = runner.app::<eu::Invoicing>().unwrap();
    let mut reader = invoices.log().reader();
    let notification = reader.next().await.unwrap().expect("an invoice was issued");
    let invoice: Invoice = invoices.load(notification.event.originator_id).await.unwrap();
    assert_eq!(invoice.order, order.id());
    runner.shutdown().await.unwrap();
}
