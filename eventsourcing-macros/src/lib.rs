//! Procedural macros for [`eventsourcing`](https://docs.rs/eventsourcing).
//!
//! Use them through the `eventsourcing` crate, which re-exports them; the
//! code they generate names the runtime through `::eventsourcing::__private`
//! so that it works whatever the user has imported. Each macro parses its
//! input into a small model, checks it (collecting every mistake, each on
//! the offending tokens), then generates code from the valid parts.

use proc_macro::TokenStream;

mod aggregate;
mod errors;
mod policy;
mod system;

/// Makes a struct an event-sourced aggregate.
///
/// Put it on the struct, which gains a hidden field for identity, version,
/// timestamps and pending events, and on the struct's `impl` block, whose
/// [`#[event]`](macro@event) methods declare the aggregate's events. From
/// each `#[event(Name)]` method it generates:
///
/// - a named event type `AggregateName` (here `OrderCreated`, `OrderPaid`)
///   whose fields are the method's arguments, with serde, and topic
///   `Aggregate.Name` registered for the whole program;
/// - a variant of the event enum `AggregateEvent` (here `OrderEvent`);
/// - the method you call: it builds the event, runs your body, and keeps the
///   event pending with the aggregate's id, the next version and a
///   timestamp;
/// - the replay dispatch: loading the aggregate runs the same body.
///
/// The struct's visibility is given to the generated types. The aggregate
/// implements [`Aggregate`](../eventsourcing/trait.Aggregate.html):
/// `id()`, `version()`, `created_on()`, `modified_on()`,
/// `pending_events()`.
///
/// ```
/// use eventsourcing::prelude::*;
/// use uuid::Uuid;
///
/// #[aggregate]
/// #[derive(Debug, Default)]
/// pub struct Order {
///     paid_by: Option<Uuid>,
/// }
///
/// #[aggregate]
/// impl Order {
///     /// The creation event: no `self`, returns `Self`; the order gets a new id.
///     #[event(Created)]
///     pub fn create() -> Self {
///         Self::default()
///     }
///
///     #[event(Paid)]
///     fn set_paid(&mut self, payment_id: Uuid) {
///         self.paid_by = Some(payment_id);
///     }
///
///     /// A command: it checks, then triggers an event (or returns an error
///     /// and records nothing).
///     pub fn pay(&mut self, payment_id: Uuid) -> Result<(), &'static str> {
///         if self.paid_by.is_some() {
///             return Err("already paid");
///         }
///         self.set_paid(payment_id);
///         Ok(())
///     }
/// }
///
/// let mut order = Order::create();
/// order.pay(Uuid::new_v4()).unwrap();
/// assert!(order.pay(Uuid::new_v4()).is_err());
/// assert_eq!(order.version(), 2);
/// assert_eq!(order.pending_events()[1].topic(), "Order.Paid");
/// assert_eq!(OrderPaid::TOPIC, "Order.Paid");
///
/// // Replaying the pending events rebuilds an equal order.
/// let replayed = Order::replay(&order.encode_pending().unwrap()).unwrap().unwrap();
/// assert_eq!((replayed.id(), replayed.paid_by), (order.id(), order.paid_by));
/// ```
///
/// On the `impl` block, `#[aggregate(name = "Purchase")]` sets the name used
/// in topics and messages (by default the type's name).
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, input: TokenStream) -> TokenStream {
    aggregate::expand(args.into(), input.into()).into()
}

/// Declares an event: the method's arguments are the event's data and its
/// body is the change the event makes.
///
/// Only valid on methods inside an [`#[aggregate]`](macro@aggregate) impl
/// block, which reads and removes these attributes.
///
/// - `#[event(Name)]` names the event; its type is `AggregateName`.
/// - `topic = "..."` stores it under another topic than `Aggregate.Name`.
/// - `version = N` declares the version of its data (1 by default), stored
///   with each event.
/// - `upcasters(from_v1, ...)` names, for a version above 1, one function
///   per earlier version, in order: each a `fn(&mut serde_json::Value)`
///   that changes state stored at version `n` to version `n + 1`. Events
///   stored at older versions are upcast through them when read.
///
/// A method without `self` that returns `Self` is a creation event. Mark an
/// argument `#[id]` to choose the new aggregate's id, for example a UUID v5
/// derived from a name; otherwise it gets a new random id. Every other event
/// method takes `&mut self`, returns nothing, and is not `async` or generic;
/// its arguments are plain names with owned types, because they are stored.
///
/// ```
/// use eventsourcing::prelude::*;
/// use uuid::Uuid;
///
/// #[aggregate]
/// #[derive(Debug)]
/// struct Account {
///     email: String,
///     verified: bool,
/// }
///
/// #[aggregate]
/// impl Account {
///     // Version 1 stored the address as `mail`.
///     #[event(Opened, topic = "accounts.opened", version = 2, upcasters(opened_from_v1))]
///     fn open(#[id] id: Uuid, email: String) -> Self {
///         Self { email, verified: false }
///     }
///
///     #[event(Verified)]
///     fn verify(&mut self) {
///         self.verified = true;
///     }
///
///     /// One account per email: its id is derived from the email.
///     fn for_email(email: &str) -> Self {
///         Self::open(Uuid::new_v5(&Uuid::NAMESPACE_URL, email.as_bytes()), email.to_owned())
///     }
/// }
///
/// fn opened_from_v1(state: &mut serde_json::Value) {
///     state["email"] = state["mail"].take();
/// }
///
/// let mut account = Account::for_email("ada@example.com");
/// account.verify();
/// assert_eq!(account.id(), Uuid::new_v5(&Uuid::NAMESPACE_URL, b"ada@example.com"));
/// assert_eq!((AccountOpened::TOPIC, AccountOpened::VERSION), ("accounts.opened", 2));
/// assert_eq!(account.pending_events()[1].topic(), "Account.Verified");
/// ```
#[proc_macro_attribute]
pub fn event(_args: TokenStream, input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[event]` only works on methods inside an `#[aggregate]` impl block; add `#[aggregate]` to the `impl`",
    )
    .to_compile_error();
    quote::quote!(#error #input).into()
}

/// Makes a type a process application: its `impl` block's handler methods
/// respond to the events of the applications it follows.
///
/// - `aggregates(A, B)` (required) names the aggregates the application
///   records, so that `system!` can check who can follow it. It binds: the
///   handlers' repository hands out these aggregates and no others (getting
///   or adding another is a compile error on that call).
/// - `name = "…"` names the application and its tables (by default the
///   type's name). Two applications of one system cannot share a name.
///
/// A handler is an `async fn(&self, event: &Notified<EventType>, repo: &mut
/// Repo<Self>) -> Result<()>`: the event type it takes (such as
/// `OrderCreated`) says which topic it handles. It loads or adds aggregates
/// through the repository; when it returns `Ok`, the runtime records their new events
/// with the tracking position in one transaction. An `Err` or a panic
/// records nothing. Events with no handler are passed over, and tracked.
/// Other methods in the block are left as they are. The type needs
/// `Default`: runners make its value.
///
/// ```
/// use eventsourcing::prelude::*;
///
/// #[aggregate]
/// #[derive(Debug, Default)]
/// pub struct Order {}
///
/// #[aggregate]
/// impl Order {
///     #[event(Created)]
///     pub fn create() -> Self { Self {} }
/// }
///
/// #[aggregate]
/// #[derive(Debug, Default)]
/// pub struct Invoice { order: Uuid }
///
/// #[aggregate]
/// impl Invoice {
///     #[event(Issued)]
///     pub fn issue(order: Uuid) -> Self { Self { order } }
/// }
///
/// #[derive(Default)]
/// struct Invoicing;
///
/// #[policy(aggregates(Invoice))]
/// impl Invoicing {
///     async fn order_created(&self, event: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
///         repo.add(Invoice::issue(event.originator_id));
///         Ok(())
///     }
/// }
///
/// // Unit-tested without a store:
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let order = Order::create();
/// let mut repo = Repo::new();
/// Invoicing.order_created(&Notified::new(order.id(), 1, OrderCreated {}), &mut repo).await?;
/// assert_eq!(repo.aggregates::<Invoice>().next().unwrap().order, order.id());
/// # Ok::<(), eventsourcing::Error>(())
/// # }).unwrap();
/// ```
#[proc_macro_attribute]
pub fn policy(args: TokenStream, input: TokenStream) -> TokenStream {
    policy::expand(args.into(), input.into()).into()
}

/// Declares a system of process applications: who follows whom.
///
/// `A => B` says that `B` follows `A`'s log. Chains continue (`A => B =>
/// A`), commas separate chains, and an application may follow itself. The
/// result is a [`System`](../eventsourcing/struct.System.html) to give a
/// runner. While compiling, the macro checks that:
///
/// - every name is a process application (has `#[policy]`);
/// - in every `A => B`, `B` handles some event of an aggregate `A` records;
/// - every handler can run: some application its application follows
///   records the handler's event type;
/// - no two applications have one name (two types called `Invoicing` in two
///   modules, or two `#[policy(name = "billing")]`), which would share
///   tables; one type named by two paths is one application;
/// - no two aggregate types recorded in the system have events of one
///   topic.
///
/// ```
/// # use eventsourcing::prelude::*;
/// # #[aggregate] #[derive(Debug, Default)] pub struct Order {}
/// # #[aggregate] impl Order { #[event(Created)] pub fn create() -> Self { Self {} } }
/// # #[aggregate] #[derive(Debug, Default)] pub struct Invoice {}
/// # #[aggregate] impl Invoice { #[event(Issued)] pub fn issue() -> Self { Self {} } }
/// #[derive(Default)]
/// struct Orders;
///
/// #[policy(aggregates(Order))]
/// impl Orders {}
///
/// #[derive(Default)]
/// struct Invoicing;
///
/// #[policy(aggregates(Invoice))]
/// impl Invoicing {
///     async fn order_created(&self, _: &Notified<OrderCreated>, repo: &mut Repo<Self>) -> Result<()> {
///         repo.add(Invoice::issue());
///         Ok(())
///     }
/// }
///
/// let system = system!(Orders => Invoicing);
/// assert_eq!(system.mermaid(), "flowchart LR\n    Orders --> Invoicing\n");
/// ```
#[proc_macro]
pub fn system(input: TokenStream) -> TokenStream {
    system::expand(input.into()).into()
}
