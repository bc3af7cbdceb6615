//! The Order aggregate of the design brief.
use eventsourcing::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[aggregate]
#[derive(Debug, Default, Serialize, Deserialize)]
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

fn takes_event(event: &OrderReserved) -> Uuid {
    event.reservation_id
}

fn main() {
    let mut order = Order::create();
    order.set_is_reserved(Uuid::new_v4());
    order.set_is_paid(Uuid::new_v4());
    assert_eq!(order.version(), 3);
    assert!(order.is_reserved && order.is_paid);
    let _ = takes_event(&OrderReserved { reservation_id: Uuid::nil() });
    let _: &[&str] = <OrderEvent as eventsourcing::DomainEvent>::TOPICS;
}
