//! Process applications made with their dependencies: a policy that holds
//! a configuration and a shared counter, and no `Default`, is given to the
//! runner as an instance (`ProcessOptions::instance`), and every runner
//! (and a retry of a parked notification, and a simulation) runs that
//! instance. Without one, or with one of an application the system does
//! not have, a runner refuses to start, naming the application.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use eventsourcing::prelude::*;
use eventsourcing::simulation::Simulation;
use eventsourcing::{Error, OnFailure, RunnerKind};

/// A ticket handed in at the desk.
#[aggregate]
#[derive(Debug, Default)]
pub struct Ticket {}

#[aggregate]
impl Ticket {
    #[event(Opened)]
    pub fn open() -> Self {
        Self {}
    }
}

/// A ticket's stamp, with the office that stamped it (its id is the
/// ticket's).
#[aggregate]
#[derive(Debug, Default)]
pub struct Stamp {
    pub office: String,
}

#[aggregate]
impl Stamp {
    #[event(Put)]
    pub fn put_on(#[id] ticket: Uuid, office: String) -> Self {
        Self { office }
    }
}

#[derive(Default)]
struct Desk;

#[policy(aggregates(Ticket))]
impl Desk {}

/// Stamps tickets with its office's name. It has no `Default`: the office
/// is configuration, the counter and the switch are shared with the test.
struct Stamper {
    office: String,
    stamped: Arc<AtomicUsize>,
    open: Arc<AtomicBool>,
}

impl Stamper {
    fn new(office: &str) -> Self {
        Self {
            office: office.to_owned(),
            stamped: Arc::new(AtomicUsize::new(0)),
            open: Arc::new(AtomicBool::new(true)),
        }
    }
}

#[policy(aggregates(Stamp))]
impl Stamper {
    async fn ticket_opened(&self, ticket: &Notified<TicketOpened>, repo: &mut Repo<Self>) -> Result<(), String> {
        if !self.open.load(Ordering::SeqCst) {
            return Err(format!("the {} office is closed", self.office));
        }
        repo.add(Stamp::put_on(ticket.originator_id, self.office.clone()));
        self.stamped.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Another type that calls itself `Stamper`.
struct Impostor;

#[policy(name = "Stamper", aggregates())]
impl Impostor {}

fn system() -> System {
    system!(Desk => Stamper)
}

/// Opens `count` tickets through the runner; returns their ids.
async fn open_tickets(runner: &Runner, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let mut ticket = Ticket::open();
        runner.save::<Desk>(&mut ticket).await.unwrap().processed().unwrap();
        ids.push(ticket.id());
    }
    ids
}

async fn handlers_see_the_instance_they_were_given(store: &Store, kind: RunnerKind) {
    let stamper = Stamper::new("Zürich");
    let stamped = stamper.stamped.clone();
    // Two partitions: the workers of both share the one instance.
    let options = ProcessOptions::default().partitions(2).instance(stamper);
    let runner = Runner::start(kind, system(), store, options).await.unwrap();
    let tickets = open_tickets(&runner, 6).await;
    runner.wait_until_quiet().await.unwrap();
    assert_eq!(
        stamped.load(Ordering::SeqCst),
        6,
        "{kind}: the instance's counter counts every stamp"
    );
    for ticket in tickets {
        let stamp: Stamp = runner.app::<Stamper>().unwrap().load(ticket).await.unwrap();
        assert_eq!(stamp.office, "Zürich", "{kind}: ticket {ticket}");
    }
    runner.shutdown().await.unwrap();
}

async fn a_retried_dead_letter_runs_the_instance(store: &Store, kind: RunnerKind) {
    let stamper = Stamper::new("Basel");
    let (stamped, open) = (stamper.stamped.clone(), stamper.open.clone());
    open.store(false, Ordering::SeqCst);
    let options = ProcessOptions::default().on_failure(OnFailure::Park).instance(stamper);
    let runner = Runner::start(kind, system(), store, options).await.unwrap();
    let tickets = open_tickets(&runner, 1).await;
    runner.wait_until_quiet().await.unwrap();
    let letters = runner.dead_letters::<Stamper>().await.unwrap();
    assert_eq!(letters.len(), 1, "{kind}: {letters:?}");
    assert!(
        letters[0].error.contains("the Basel office is closed"),
        "{kind}: {}",
        letters[0].error
    );

    // Opening the office through the instance is what lets the retry pass.
    open.store(true, Ordering::SeqCst);
    runner.retry_dead_letter(&letters[0]).await.unwrap();
    assert_eq!(stamped.load(Ordering::SeqCst), 1, "{kind}");
    let stamp: Stamp = runner.app::<Stamper>().unwrap().load(tickets[0]).await.unwrap();
    assert_eq!(stamp.office, "Basel", "{kind}");
    runner.shutdown().await.unwrap();
}

eventsourcing_tests::on_every_backend_and_runner!(
    handlers_see_the_instance_they_were_given,
    a_retried_dead_letter_runs_the_instance,
);

/// The reason of a runner's refusal to start.
async fn refusal(kind: RunnerKind, system: System, options: ProcessOptions) -> String {
    let store = Store::open("memory:").await.unwrap();
    match Runner::start(kind, system, &store, options).await {
        Err(Error::Runner { reason }) => reason,
        Err(other) => panic!("{kind}: expected Error::Runner, got {other}"),
        Ok(_) => panic!("{kind}: the runner started"),
    }
}

#[tokio::test]
async fn an_application_without_default_and_without_an_instance_is_refused_at_start() {
    for kind in [RunnerKind::SingleThreaded, RunnerKind::MultiTask] {
        let reason = refusal(kind, system(), ProcessOptions::default()).await;
        assert!(
            reason.contains("`Stamper` does not implement `Default`")
                && reason.contains("ProcessOptions::instance::<process_instances::Stamper>(…)"),
            "{kind}: {reason}"
        );
    }
}

#[tokio::test]
async fn an_instance_of_an_application_outside_the_system_is_refused() {
    for kind in [RunnerKind::SingleThreaded, RunnerKind::MultiTask] {
        let options = ProcessOptions::default().instance(Stamper::new("Bern"));
        let reason = refusal(kind, system!(Desk), options).await;
        assert!(
            reason.contains(
                "instance of `Stamper` (`process_instances::Stamper`), which is not an application of this system"
            ),
            "{kind}: {reason}"
        );
        // Another type of the same name is not the system's application.
        let options = ProcessOptions::default()
            .instance(Stamper::new("Bern"))
            .instance(Impostor);
        let reason = refusal(kind, system(), options).await;
        assert!(
            reason.contains("an instance of `process_instances::Impostor` for `Stamper`, but this system's `Stamper` is `process_instances::Stamper`"),
            "{kind}: {reason}"
        );
    }
}

#[tokio::test]
async fn an_instance_given_inside_one_applications_settings_is_refused() {
    for kind in [RunnerKind::SingleThreaded, RunnerKind::MultiTask] {
        let options = ProcessOptions::default().app::<Stamper>(|o| o.instance(Stamper::new("Chur")));
        let reason = refusal(kind, system(), options).await;
        assert!(
            reason.contains("the process options for `Stamper` give an instance of an application")
                && reason.contains("not inside `ProcessOptions::app`"),
            "{kind}: {reason}"
        );
    }
}

#[tokio::test]
async fn a_worker_runs_the_instance_it_was_given() {
    let Some(store) = eventsourcing_tests::fresh_postgres_store().await else {
        return;
    };
    let reason = match Runner::worker(system(), &store, ProcessOptions::default()).await {
        Err(Error::Runner { reason }) => reason,
        other => panic!("expected Error::Runner, got {:?}", other.map(|_| ())),
    };
    assert!(reason.contains("`Stamper` does not implement `Default`"), "{reason}");

    let stamper = Stamper::new("Genève");
    let stamped = stamper.stamped.clone();
    let options = ProcessOptions::default()
        .partitions(2)
        .lease_ttl(Duration::from_secs(2))
        .instance(stamper);
    let runner = Runner::worker(system(), &store, options).await.unwrap();
    let tickets = open_tickets(&runner, 4).await;
    runner.wait_until_quiet().await.unwrap();
    assert_eq!(stamped.load(Ordering::SeqCst), 4);
    for ticket in tickets {
        let stamp: Stamp = runner.app::<Stamper>().unwrap().load(ticket).await.unwrap();
        assert_eq!(stamp.office, "Genève");
    }
    runner.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_simulation_runs_the_instance_it_was_given() {
    let workload = |apps: eventsourcing::simulation::Apps, _| async move {
        apps.app::<Desk>()?.save(&mut Ticket::open()).await?;
        Ok(())
    };
    let stamper = Stamper::new("Lugano");
    let stamped = stamper.stamped.clone();
    let summary = Simulation::new(system(), 5, workload)
        .instance(stamper)
        .run_seeds(0..3)
        .await
        .unwrap();
    assert_eq!(summary.runs, 3);
    // The reference run and three seeds, 5 tickets each, at least once.
    assert!(
        stamped.load(Ordering::SeqCst) >= 20,
        "{}",
        stamped.load(Ordering::SeqCst)
    );

    let error = Simulation::new(system(), 5, workload).run(0).await.unwrap_err();
    assert!(
        error.to_string().contains("`Stamper` does not implement `Default`"),
        "{error}"
    );
}
