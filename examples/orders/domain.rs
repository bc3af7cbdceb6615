//! The orders system: orders are reserved, then paid, by three applications
//! that follow each other's logs.
//!
//! ```text
//! Orders --Order.Created--> Reservations --Reservation.Created--> Orders
//! Orders --Order.Reserved--> Payments --Payment.Created--> Orders
//! ```

use eventsourcing::prelude::*;
use serde::{Deserialize, Serialize};

/// An order: created by a customer, then reserved and paid by the system.
#[aggregate]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Order {
    pub is_reserved: bool,
    pub reservation_id: Option<Uuid>,
    pub is_paid: bool,
    pub payment_id: Option<Uuid>,
}

#[aggregate]
impl Order {
    /// A new order. Its id is chosen by the caller, so that creating the
    /// same order twice is a conflict, not a second order.
    #[event(Created)]
    pub fn create(#[id] id: Uuid) -> Self {
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

/// Stock held for one order.
#[aggregate]
#[derive(Debug, Default)]
pub struct Reservation {
    pub order_id: Uuid,
}

#[aggregate]
impl Reservation {
    #[event(Created)]
    pub fn create(order_id: Uuid) -> Self {
        Self { order_id }
    }
}

/// Payment taken for one order.
#[aggregate]
#[derive(Debug, Default)]
pub struct Payment {
    pub order_id: Uuid,
}

#[aggregate]
impl Payment {
    #[event(Created)]
    pub fn create(order_id: Uuid) -> Self {
        Self { order_id }
    }
}

/// Takes orders, and marks them reserved and paid.
#[derive(Default)]
pub struct Orders;

#[policy(aggregates(Order))]
impl Orders {
    async fn reservation_created(&self, event: &Notified<ReservationCreated>, repo: &mut Repo<Self>) -> Result<()> {
        let order = repo.get::<Order>(event.order_id).await?;
        order.set_is_reserved(event.originator_id);
        Ok(())
    }

    async fn payment_created(&self, event: &Notified<PaymentCreated>, repo: &mut Repo<Self>) -> Result<()> {
        let order = repo.get::<Order>(event.order_id).await?;
        order.set_is_paid(event.originator_id);
        Ok(())
    }
}

/// Reserves stock for each new order.
#[derive(Default)]
pub struct Reservations;

#[policy(aggregates(Reservation))]
impl Reservations {
    async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
        repo.add(Reservation::create(event.originator_id));
        Ok(())
    }
}

/// Takes payment for each reserved order.
#[derive(Default)]
pub struct Payments;

#[policy(aggregates(Payment))]
impl Payments {
    async fn order_reserved(&self, event: &Notified<OrderReserved>, repo: &mut Repo<Self>) -> Result<()> {
        repo.add(Payment::create(event.originator_id));
        Ok(())
    }
}

/// Orders are reserved by Reservations and paid through Payments.
pub fn system() -> System {
    system!(Orders => Reservations => Orders => Payments => Orders)
}

/// The id of the `n`th order: the same in every run, so that a restarted
/// program does not create an order twice, and increasing with `n`, so that
/// the store's index of aggregate ids grows at one end.
pub fn order_id(n: u64) -> Uuid {
    Uuid::from_u128(FIRST_ORDER_ID + u128::from(n))
}

/// An arbitrary UUID v7; order numbers count up from it in the low bits,
/// which leaves the version and variant bits as they are.
const FIRST_ORDER_ID: u128 = 0x0193_a2f0_5c00_7000_8000_0000_0000_0000;

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn reservations_reserve_each_new_order() {
        run(async {
            let order = Order::create(order_id(1));
            let mut repo = Repo::new();
            let created = Notified::new(order.id(), 1, OrderCreated {});
            Reservations.order_created(&created, &mut repo).await.unwrap();
            let reservations: Vec<_> = repo.aggregates::<Reservation>().collect();
            assert_eq!(reservations.len(), 1);
            assert_eq!(reservations[0].order_id, order.id());
        });
    }

    #[test]
    fn orders_mark_the_order_reserved_then_paid() {
        run(async {
            let mut repo = Repo::new();
            let order_id = repo.add(Order::create(order_id(1))).id();
            let reservation = Reservation::create(order_id);
            let reserved = Notified::new(reservation.id(), 1, ReservationCreated { order_id });
            Orders.reservation_created(&reserved, &mut repo).await.unwrap();
            let payment = Payment::create(order_id);
            let paid = Notified::new(payment.id(), 1, PaymentCreated { order_id });
            Orders.payment_created(&paid, &mut repo).await.unwrap();

            let order = repo.get::<Order>(order_id).await.unwrap();
            assert_eq!(order.reservation_id, Some(reservation.id()));
            assert_eq!(order.payment_id, Some(payment.id()));
            assert_eq!(order.version(), 3);
        });
    }

    #[test]
    fn orders_fail_for_an_unknown_order() {
        run(async {
            let order_id = order_id(7);
            let paid = Notified::new(Uuid::new_v4(), 1, PaymentCreated { order_id });
            let error = Orders.payment_created(&paid, &mut Repo::new()).await.unwrap_err();
            assert!(
                matches!(error, eventsourcing::Error::AggregateNotFound { originator_id, .. } if originator_id == order_id)
            );
        });
    }
}
