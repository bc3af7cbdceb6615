//! The README's tour as a program: an Order aggregate declared with
//! `#[aggregate]`, saved in the embedded SQLite file (or the store
//! `EVENTSOURCING_STORE_URL` names), loaded back, and read through the
//! application's notification log.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use eventsourcing::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[aggregate]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    is_reserved: bool,
    reservation_id: Option<Uuid>,
    is_paid: bool,
    payment_id: Option<Uuid>,
}

#[aggregate]
impl Order {
    #[event(Created)]
    pub fn create() -> Self {
        Self::default()
    }

    #[event(Reserved)]
    pub fn set_is_reserved(&mut self, reservation_id: Uuid) {
        self.is_reserved = true;
        self.reservation_id = Some(reservation_id);
    }

    #[event(Paid)]
    pub fn set_is_paid(&mut self, payment_id: Uuid) {
        self.is_paid = true;
        self.payment_id = Some(payment_id);
    }
}

#[tokio::main]
async fn main() -> eventsourcing::Result<()> {
    // The embedded SQLite file `eventsourcing.db`, unless EVENTSOURCING_STORE_URL says otherwise.
    let store = Store::from_env().await?;
    let orders = Application::open(&store, "orders").await?;

    let mut order = Order::create();
    order.set_is_reserved(Uuid::new_v4());
    order.set_is_paid(Uuid::new_v4());
    let ids = orders.save(&mut order).await?;
    println!("saved order {} as notifications {ids:?}", order.id());

    let loaded: Order = orders.load(order.id()).await?;
    assert_eq!(loaded, order);
    println!(
        "loaded it back at version {}: paid = {}",
        loaded.version(),
        loaded.is_paid
    );

    // Everything the application recorded, in order (every run adds an order).
    let mut reader = orders.log().reader();
    while let Some(notification) = reader.next().await? {
        let event = notification.event.decode::<OrderEvent>()?;
        println!("#{} {} {}", notification.id, event.originator_id, event.topic());
    }
    Ok(())
}
