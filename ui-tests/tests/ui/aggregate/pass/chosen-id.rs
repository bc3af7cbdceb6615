use eventsourcing::prelude::*;
use uuid::Uuid;

#[aggregate]
#[derive(Debug, Default)]
struct Account {
    email: String,
}

#[aggregate(name = "CustomerAccount")]
impl Account {
    #[event(Opened)]
    fn open(#[id] id: Uuid, email: String) -> Account {
        let _ = id;
        Account { email }
    }

    fn for_email(email: &str) -> Self {
        Self::open(Uuid::new_v5(&Uuid::NAMESPACE_URL, email.as_bytes()), email.to_owned())
    }
}

fn main() {
    let account = Account::for_email("ada@example.com");
    assert_eq!(account.id(), Uuid::new_v5(&Uuid::NAMESPACE_URL, b"ada@example.com"));
    assert_eq!(account.email, "ada@example.com");
    assert_eq!(AccountOpened::TOPIC, "CustomerAccount.Opened");
}
