//! Accounts that pay each other: a transfer withdraws from one account and
//! sends the other a deposit, a message delivered exactly once.

use eventsourcing::HandlerError;
use eventsourcing::entities::{Entity, Message};
use eventsourcing::prelude::*;
use serde::{Deserialize, Serialize};

/// What each paying account starts with, and pays in transfers of
/// [`TRANSFER`].
pub const OPENING: u64 = 100;
pub const TRANSFER: u64 = 10;

#[aggregate]
#[derive(Debug, Default)]
pub struct Account {
    pub opened: bool,
    pub balance: u64,
}

#[aggregate(entity)]
impl Account {
    #[event(Opened)]
    fn opened(&mut self, balance: u64) {
        self.opened = true;
        self.balance = balance;
    }

    #[event(Deposited)]
    pub fn deposit(&mut self, amount: u64) {
        self.balance += amount;
    }

    #[event(Withdrawn)]
    fn withdrawn(&mut self, amount: u64, to: Uuid) {
        let _ = to;
        self.balance -= amount;
    }

    /// Opens the account with `balance`, once.
    pub fn open(&mut self, balance: u64) {
        if !self.opened {
            self.opened(balance);
        }
    }
}

/// A deposit sent by a transfer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deposit {
    pub amount: u64,
}

impl Message for Deposit {
    type Target = Account;
    const NAME: &'static str = "deposit";

    fn apply(self, account: &mut Entity<'_, Account>) -> Result<(), HandlerError> {
        account.deposit(self.amount);
        Ok(())
    }
}

/// Pays [`TRANSFER`] to `to`, or refuses once the account is empty.
pub fn pay(account: &mut Entity<Account>, to: Uuid) -> Result<u64, &'static str> {
    if account.balance < TRANSFER {
        return Err("paid out");
    }
    account.withdrawn(TRANSFER, to);
    account.send_message(to, Deposit { amount: TRANSFER });
    Ok(account.balance)
}

/// The `n`-th pair of accounts: the one that pays, and the one paid.
pub fn pair(n: u64) -> (Uuid, Uuid) {
    let base = 0x0193_a2f0_5c00_7000_9000_0000_0000_0000u128 + 2 * u128::from(n);
    (Uuid::from_u128(base), Uuid::from_u128(base + 1))
}
