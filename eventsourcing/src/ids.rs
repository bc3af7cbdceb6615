//! New aggregate ids: time-ordered in production, and reproducible where a
//! simulation asks for them.
//!
//! A [`Simulation`](crate::simulation::Simulation) compares each run with an
//! uninterrupted one, so the aggregates a handler (or a command) creates
//! must get the same ids in both. While a scope is entered on this thread,
//! the `n`-th new id is derived from the scope's key and `n`; the key names
//! what is being done (the command; the application and the upstream event
//! it handles), not when, so the same work gets the same ids in any
//! schedule.

use std::cell::RefCell;

use uuid::Uuid;

thread_local! {
    /// The scope in force on this thread: its namespace and ids handed out.
    static SCOPE: RefCell<Option<(Uuid, u64)>> = const { RefCell::new(None) };
    /// Whether scopes are honoured at all on this thread (only in
    /// simulations), so that production code pays one flag read.
    static ENABLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Namespace of the derived ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x6576_656e_7473_6f75_7263_696e_6720_6964);

/// A new aggregate id: a UUID v7, which grows with time, so that the
/// stores' index on (aggregate id, version) is appended to, not written all
/// over; or, within a reproducible scope, an id derived from the scope.
pub fn new_id() -> Uuid {
    if ENABLED.get() {
        let derived = SCOPE.with_borrow_mut(|scope| {
            scope.as_mut().map(|(namespace, count)| {
                *count += 1;
                Uuid::new_v5(namespace, &count.to_be_bytes())
            })
        });
        if let Some(id) = derived {
            return id;
        }
    }
    Uuid::now_v7()
}

/// Turns reproducible scopes on for this thread while it lives.
pub(crate) struct Reproducible(());

impl Reproducible {
    pub(crate) fn enable() -> Self {
        ENABLED.set(true);
        Self(())
    }
}

impl Drop for Reproducible {
    fn drop(&mut self) {
        ENABLED.set(false);
        SCOPE.set(None);
    }
}

/// Ids derived from `key` until the guard drops (if scopes are enabled).
pub(crate) struct Scope {
    previous: Option<(Uuid, u64)>,
}

impl Scope {
    /// `key` is called only when scopes are enabled.
    pub(crate) fn enter(key: impl FnOnce() -> String) -> Option<Self> {
        if !ENABLED.get() {
            return None;
        }
        let namespace = Uuid::new_v5(&NAMESPACE, key().as_bytes());
        let previous = SCOPE.replace(Some((namespace, 0)));
        Some(Self { previous })
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        SCOPE.set(self.previous.take());
    }
}
