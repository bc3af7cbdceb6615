//! The program-wide register of topics: every event type says which topic
//! it is stored under, and no two may say the same.
//!
//! Within one aggregate `#[aggregate]` rejects a repeated topic at compile
//! time. Across aggregates and crates the check runs at start-up, when the
//! first application opens: a topic claimed twice would make stored events
//! ambiguous, so it is an error, never a silent choice.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::{Error, Result};

/// One event type's claim on a topic. `#[aggregate]` submits one per event.
#[derive(Debug)]
pub struct TopicRegistration {
    /// The stored topic.
    pub topic: &'static str,
    /// The event type's name, such as `OrderCreated`.
    pub event_type: &'static str,
    /// The aggregate's name.
    pub aggregate: &'static str,
    /// The module the event type is in (`module_path!()`), which tells two
    /// aggregates of one name apart.
    pub module: &'static str,
    /// The event data's version.
    pub version: u32,
}

inventory::collect!(TopicRegistration);

/// Every topic registered in this program.
pub fn registered() -> impl Iterator<Item = &'static TopicRegistration> {
    inventory::iter::<TopicRegistration>.into_iter()
}

/// Fails with [`Error::DuplicateTopic`] if two event types in this program
/// claim one topic. The answer is computed once.
pub fn check() -> Result<()> {
    static CHECKED: OnceLock<Option<(&'static str, String, String)>> = OnceLock::new();
    let duplicate = CHECKED.get_or_init(|| {
        let mut seen: HashMap<&str, &TopicRegistration> = HashMap::new();
        for registration in registered() {
            if let Some(first) = seen.insert(registration.topic, registration) {
                let name = |r: &TopicRegistration| format!("{}::{}::{}", r.module, r.aggregate, r.event_type);
                let (mut a, mut b) = (name(first), name(registration));
                if a > b {
                    std::mem::swap(&mut a, &mut b);
                }
                return Some((registration.topic, a, b));
            }
        }
        None
    });
    match duplicate {
        None => Ok(()),
        Some((topic, first, second)) => Err(Error::DuplicateTopic {
            topic,
            first: first.clone(),
            second: second.clone(),
        }),
    }
}
