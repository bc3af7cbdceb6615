//! The process applications a runner was given, made with their
//! dependencies ([`ProcessOptions::instance`](crate::ProcessOptions::instance)),
//! and how a runner gets each application's policy: that instance, or a
//! default one.

use std::any::TypeId;
use std::sync::Arc;

use super::Process;
use super::worker::DynProcess;
use crate::system::SystemApp;
use crate::{Error, ProcessOptions, Result, System};

/// One application made by the user.
#[derive(Clone)]
struct Instance {
    name: &'static str,
    type_id: TypeId,
    type_name: &'static str,
    policy: Arc<dyn DynProcess>,
}

/// The instances given, one per application type (the last one given).
#[derive(Clone, Default)]
pub(crate) struct Instances(Vec<Instance>);

impl Instances {
    pub(crate) fn add<P: Process>(&mut self, policy: P) {
        self.0.retain(|instance| instance.type_id != TypeId::of::<P>());
        self.0.push(Instance {
            name: P::NAME,
            type_id: TypeId::of::<P>(),
            type_name: std::any::type_name::<P>(),
            policy: Arc::new(policy),
        });
    }

    /// The instance given for `app`, if one was.
    fn of(&self, app: &SystemApp) -> Option<&Instance> {
        self.0.iter().find(|instance| instance.type_id == app.type_id)
    }
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|instance| instance.type_name))
            .finish()
    }
}

/// The same instances: the same applications, the very same values.
impl PartialEq for Instances {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.type_id == b.type_id && Arc::ptr_eq(&a.policy, &b.policy))
    }
}

impl Eq for Instances {}

/// Makes a new value of an application with `Default`.
pub(crate) type MakeDefault = Arc<dyn Fn() -> Arc<dyn DynProcess> + Send + Sync>;

/// How to make `P` without its dependencies, if it implements `Default`.
pub(crate) fn default_of<P: Process>() -> Option<MakeDefault> {
    let make = P::__default_maker()?;
    Some(Arc::new(move || Arc::new(make()) as Arc<dyn DynProcess>))
}

/// Where a runner gets an application's policy for each of its workers.
#[derive(Clone)]
pub(crate) enum Policy {
    /// The instance the user gave, shared by every worker (every partition,
    /// every task) and by retries of parked notifications.
    Given(Arc<dyn DynProcess>),
    /// A new `Default` value for each worker, as it would be after a restart.
    Default(MakeDefault),
}

impl Policy {
    pub(crate) fn make(&self) -> Arc<dyn DynProcess> {
        match self {
            Policy::Given(policy) => policy.clone(),
            Policy::Default(make) => make(),
        }
    }
}

/// Each application's policy, in the system's order: `None` for one that
/// runs in another process. Fails, naming the application, for an
/// instance of a type that is not an application of `system`, for one
/// given inside an application's settings, and for an application that
/// runs here with neither an instance nor `Default`.
pub(crate) fn policies(system: &System, options: &ProcessOptions) -> Result<Vec<Option<Policy>>> {
    let apps = system.app_specs();
    for instance in &options.instances.0 {
        if !apps.iter().any(|app| app.type_id == instance.type_id) {
            let (name, type_name) = (instance.name, instance.type_name);
            let reason = match apps.iter().find(|app| app.name == name) {
                Some(app) => format!(
                    "the process options give an instance of `{type_name}` for `{name}`, but this system's `{name}` is `{}`; give an instance of that type",
                    app.type_name
                ),
                None => format!(
                    "the process options give an instance of `{name}` (`{type_name}`), which is not an application of this system; remove it, or add `{name}` to the system"
                ),
            };
            return Err(Error::Runner { reason });
        }
    }
    // An instance is given once for the system, not in one application's
    // settings, where it would be ignored.
    if let Some(app) = options
        .apps_with_settings()
        .find(|app| options.for_app(app).instances != options.instances)
    {
        return Err(Error::Runner {
            reason: format!(
                "the process options for `{app}` give an instance of an application; give instances with `ProcessOptions::instance` on the options for the whole system, not inside `ProcessOptions::app`"
            ),
        });
    }
    let elsewhere: Vec<&str> = options.apps_elsewhere().collect();
    apps.iter()
        .map(|app| {
            if elsewhere.contains(&app.name) {
                if options.instances.of(app).is_some() {
                    return Err(Error::Runner {
                        reason: format!(
                            "the process options give an instance of `{}` and say that it runs in another process (`ProcessOptions::upstream`), where its instance is made; remove one or the other",
                            app.name
                        ),
                    });
                }
                return Ok(None);
            }
            match (options.instances.of(app), &app.default) {
                (Some(instance), _) => Ok(Some(Policy::Given(instance.policy.clone()))),
                (None, Some(make)) => Ok(Some(Policy::Default(make.clone()))),
                (None, None) => Err(Error::Runner {
                    reason: format!(
                        "the process application `{name}` does not implement `Default`, so the runner cannot make it: give it one, made with its dependencies, with `ProcessOptions::instance::<{type_name}>(…)` (`Simulation::instance` in a simulation)",
                        name = app.name,
                        type_name = app.type_name,
                    ),
                }),
            }
        })
        .collect()
}
