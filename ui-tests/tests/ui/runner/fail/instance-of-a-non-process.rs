use eventsourcing::prelude::*;

/// Sends mail, but has no `#[policy]`.
pub struct Mailer {
    pub relay: String,
}

fn main() {
    let _ = ProcessOptions::default().instance(Mailer { relay: "smtp://10.0.0.9".to_owned() });
}
