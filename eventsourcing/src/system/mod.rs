//! Systems: which process application follows which.
//!
//! `system!(Orders => Reservations => Orders)` builds a [`System`] and
//! checks its topology while compiling (see `checks.rs`); the builder
//! methods here do the same wiring without the checks.

pub mod checks;

use std::any::TypeId;

use crate::process::instances::{MakeDefault, default_of};
use crate::{Error, Process, Result};

/// Process applications and who follows whom: the input of a
/// [`Runner`](crate::Runner).
///
/// Declare one with `system!`, which checks the wiring at compile time:
///
/// ```
/// # use eventsourcing::prelude::*;
/// # #[derive(Default)] struct Orders;
/// # #[policy(aggregates())] impl Orders {}
/// # #[derive(Default)] struct Audit;
/// # #[policy(aggregates())] impl Audit {}
/// let system = System::new().follow::<Orders, Audit>();
/// assert_eq!(system.mermaid(), "flowchart LR\n    Orders --> Audit\n");
/// ```
#[derive(Clone, Default)]
pub struct System {
    apps: Vec<SystemApp>,
    edges: Vec<(&'static str, &'static str)>,
    /// The first application added with the name of another type: a
    /// runner refuses to start ([`System::check`]).
    name_clash: Option<(SystemApp, SystemApp)>,
}

/// One application of a system: its name, its type, and how to make its
/// policy.
#[doc(hidden)]
#[derive(Clone)]
pub struct SystemApp {
    pub(crate) name: &'static str,
    /// The aggregates it records, whose topics its followers expect.
    pub(crate) records: &'static [crate::Records],
    pub(crate) type_id: TypeId,
    pub(crate) type_name: &'static str,
    /// Its module path within its crate, and its name
    /// ([`Process::__PATH`] without the crate): what a store records as
    /// running it. Without the crate, so that one module compiled into two
    /// programs (a server and a worker binary) is one application.
    pub(crate) path: &'static str,
    /// How to make it when the runner was given no instance of it: `None`
    /// unless it implements `Default`.
    pub(crate) default: Option<MakeDefault>,
}

impl SystemApp {
    pub(crate) fn of<P: Process>() -> Self {
        Self {
            name: P::NAME,
            records: P::RECORDS,
            type_id: TypeId::of::<P>(),
            type_name: std::any::type_name::<P>(),
            path: P::__PATH.split_once("::").map_or(P::__PATH, |(_, path)| path),
            default: default_of::<P>(),
        }
    }

    /// Whether this is the application `P`, not another of its name.
    pub(crate) fn is<P: Process>(&self) -> bool {
        self.type_id == TypeId::of::<P>()
    }
}

impl std::fmt::Debug for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("System")
            .field("apps", &self.apps().collect::<Vec<_>>())
            .field("edges", &self.edges)
            .finish()
    }
}

impl System {
    /// A system with no applications.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the process application `P` (once, however often it is named).
    pub fn app<P: Process>(self) -> Self {
        self.__app(SystemApp::of::<P>())
    }

    /// Adds `Up` and `Down`, with `Down` following `Up`'s log.
    pub fn follow<Up: Process, Down: Process>(self) -> Self {
        self.app::<Up>().app::<Down>().__follow(Up::NAME, Down::NAME)
    }

    /// Adds an application, for `system!`.
    #[doc(hidden)]
    pub fn __app(mut self, app: SystemApp) -> Self {
        // Names that differ in case only name the same tables.
        match self.apps.iter().find(|known| known.name.eq_ignore_ascii_case(app.name)) {
            None => self.apps.push(app),
            Some(known) if known.type_id != app.type_id && self.name_clash.is_none() => {
                self.name_clash = Some((known.clone(), app));
            }
            Some(_) => {}
        }
        self
    }

    /// Fails with [`Error::DuplicateApp`] if two types of this system are
    /// applications of one name (`system!` rejects that while compiling;
    /// a system built with [`app`](System::app) and
    /// [`follow`](System::follow) is checked here, when a runner starts).
    pub fn check(&self) -> Result<()> {
        match &self.name_clash {
            None => Ok(()),
            Some((first, second)) => Err(Error::DuplicateApp {
                name: first.name,
                first: first.type_name,
                second: second.type_name,
            }),
        }
    }

    /// Adds an edge between applications added before, for `system!`.
    #[doc(hidden)]
    pub fn __follow(mut self, up: &'static str, down: &'static str) -> Self {
        if !self.edges.contains(&(up, down)) {
            self.edges.push((up, down));
        }
        self
    }

    /// The applications' names, in the order they were first named.
    pub fn apps(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.apps.iter().map(|app| app.name)
    }

    /// The applications `app` follows, in the order the edges were declared.
    pub fn upstreams<'a>(&'a self, app: &'a str) -> impl Iterator<Item = &'static str> + 'a {
        self.edges
            .iter()
            .filter(move |(_, down)| *down == app)
            .map(|(up, _)| *up)
    }

    /// The applications that follow `app`.
    pub fn followers<'a>(&'a self, app: &'a str) -> impl Iterator<Item = &'static str> + 'a {
        self.edges
            .iter()
            .filter(move |(up, _)| *up == app)
            .map(|(_, down)| *down)
    }

    pub(crate) fn app_specs(&self) -> &[SystemApp] {
        &self.apps
    }

    /// The system as a Mermaid flowchart: an arrow from each application to
    /// each of its followers.
    pub fn mermaid(&self) -> String {
        let mut text = String::from("flowchart LR\n");
        for app in self.apps() {
            if !self.edges.iter().any(|(up, down)| *up == app || *down == app) {
                text.push_str(&format!("    {app}\n"));
            }
        }
        for (up, down) in &self.edges {
            text.push_str(&format!("    {up} --> {down}\n"));
        }
        text
    }
}
