//! The README's tour as a program: a hand-written aggregate recorded in the
//! embedded SQLite file (or the store `EVENTSOURCING_STORE_URL` names), then
//! read back through the application's notification log.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use eventsourcing::{
    Aggregate, AggregateMeta, AppName, DomainEvent, NotApplicable, NotificationLog, Recorder, Store, Versions, codec,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The events of a dog: what happened, as data.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum DogEvent {
    Registered { name: String },
    TrickAdded { trick: String },
}

impl DomainEvent for DogEvent {
    const TOPICS: &'static [&'static str] = &["Dog.Registered", "Dog.TrickAdded"];

    fn topic(&self) -> &'static str {
        match self {
            DogEvent::Registered { .. } => Self::TOPICS[0],
            DogEvent::TrickAdded { .. } => Self::TOPICS[1],
        }
    }

    fn encode(&self) -> Result<Vec<u8>, codec::CodecError> {
        codec::encode(self)
    }

    fn decode(topic: &str, state: &[u8]) -> Option<Result<Self, codec::CodecError>> {
        Self::TOPICS.contains(&topic).then(|| codec::decode(state))
    }
}

/// A dog: state changed only by its events.
#[derive(Debug)]
struct Dog {
    name: String,
    tricks: Vec<String>,
    meta: AggregateMeta<DogEvent>,
}

impl Aggregate for Dog {
    type Event = DogEvent;
    const NAME: &'static str = "Dog";

    fn meta(&self) -> &AggregateMeta<DogEvent> {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut AggregateMeta<DogEvent> {
        &mut self.meta
    }

    fn create(_id: Uuid, event: DogEvent) -> Option<Self> {
        match event {
            DogEvent::Registered { name } => Some(Dog {
                name: name.clone(),
                tricks: Vec::new(),
                meta: AggregateMeta::default(),
            }),
            DogEvent::TrickAdded { .. } => None,
        }
    }

    fn mutate(&mut self, event: DogEvent) -> Result<(), NotApplicable> {
        match event {
            DogEvent::Registered { .. } => Err(NotApplicable),
            DogEvent::TrickAdded { trick } => {
                self.tricks.push(trick);
                Ok(())
            }
        }
    }
}

#[tokio::main]
async fn main() -> eventsourcing::Result<()> {
    // The embedded SQLite file `eventsourcing.db`, unless EVENTSOURCING_STORE_URL says otherwise.
    let store = Store::from_env().await?;
    let recorder = store.recorder(&AppName::new("dogs")?).await?;

    // Commands trigger events; nothing is stored until the events are recorded.
    let mut dog = Dog::start(Uuid::new_v4(), DogEvent::Registered { name: "Fido".into() })?;
    dog.trigger(DogEvent::TrickAdded {
        trick: "roll over".into(),
    })?;
    dog.trigger(DogEvent::TrickAdded {
        trick: "play dead".into(),
    })?;
    let ids = recorder.insert(&dog.encode_pending()?, None).await?;
    println!(
        "recorded {} events of dog {} as notifications {ids:?}",
        ids.len(),
        dog.id()
    );

    // Replaying the stored events rebuilds the dog.
    let stored = recorder.select_events(dog.id(), Versions::ALL).await?;
    let loaded = Dog::replay(&stored)?.expect("the dog was recorded");
    println!(
        "{} knows {:?} (version {})",
        loaded.name,
        loaded.tricks,
        loaded.version()
    );

    // Every event of the application, in order, through its notification log.
    let mut reader = NotificationLog::new(recorder).reader();
    while let Some(notification) = reader.next().await? {
        let envelope = notification.event.decode::<DogEvent>()?;
        println!("#{} {} {:?}", notification.id, envelope.topic(), envelope.event);
    }
    Ok(())
}
