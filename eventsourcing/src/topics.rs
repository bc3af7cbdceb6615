//! The program-wide register of topics: every event type says which topic
//! it is stored under, and no two may say the same.
//!
//! Within one aggregate `#[aggregate]` rejects a repeated topic at compile
//! time. Across aggregates and crates the check runs at start-up, when the
//! first application opens: a topic claimed twice would make stored events
//! ambiguous, so it is an error, never a silent choice.
//!
//! The register also keeps one shared [`Topic`] per registered topic, so
//! that recording and reading events hands topics around without copying
//! them.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// The topic an event is stored under, such as `Order.Created`.
///
/// Cheap to clone and to compare. A topic some event type of this program
/// registered (every `#[event]` does) is one shared string for the whole
/// program, so recording an event or reading one back does not copy its
/// topic; any other topic, such as one written by other code, gets a
/// string of its own. It reads as a `&str`:
///
/// ```
/// use eventsourcing::topics::Topic;
///
/// let topic = Topic::new("Dog.Registered");
/// assert_eq!(topic, "Dog.Registered");
/// assert!(topic.starts_with("Dog."));
/// ```
#[derive(Clone)]
pub struct Topic(Arc<str>);

impl Topic {
    /// The topic `name`: the shared one if an event type registered it.
    pub fn new(name: &str) -> Self {
        match shared().get(name) {
            Some(topic) => topic.clone(),
            None => Self(Arc::from(name)),
        }
    }

    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared string, for a driver that can bind it without a copy.
    #[cfg(feature = "sqlite")]
    pub(crate) fn as_shared(&self) -> &Arc<str> {
        &self.0
    }
}

/// One shared [`Topic`] per registered topic, made once.
fn shared() -> &'static HashMap<&'static str, Topic> {
    static SHARED: OnceLock<HashMap<&'static str, Topic>> = OnceLock::new();
    SHARED.get_or_init(|| {
        registered()
            .map(|registration| (registration.topic, Topic(Arc::from(registration.topic))))
            .collect()
    })
}

impl Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Topic {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for Topic {
    fn from(name: String) -> Self {
        Self::new(&name)
    }
}

impl From<Topic> for String {
    fn from(topic: Topic) -> Self {
        topic.0.as_ref().to_owned()
    }
}

impl PartialEq for Topic {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Topic {}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Topic {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Topic> for &str {
    fn eq(&self, other: &Topic) -> bool {
        *self == &*other.0
    }
}

impl std::hash::Hash for Topic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Topic {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Topic {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::new(&name))
    }
}
