//! The model of an `#[aggregate]` impl block: its events and everything else,
//! checked, with the user's tokens kept for spans.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::format_ident;
use syn::{FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, LitStr, Pat, ReceiverKind, ReturnType, Safety, Type};

use super::attr::{AggregateArgs, EventArgs};
use crate::errors::Errors;

/// A checked `#[aggregate] impl` block.
pub struct AggregateImpl {
    /// The impl block without its event methods.
    pub item: ItemImpl,
    /// The aggregate type's identifier.
    pub ident: Ident,
    /// The aggregate's name in topics and messages.
    pub name: String,
    /// The events, in declaration order.
    pub events: Vec<Event>,
    /// The event enum's identifier, `OrderEvent`.
    pub enum_ident: Ident,
}

/// One `#[event]` method.
pub struct Event {
    /// `Created`, from `#[event(Created)]`.
    pub name: Ident,
    /// The generated type, `OrderCreated`.
    pub type_ident: Ident,
    pub topic: String,
    /// The `topic = "..."` literal, if the user gave one.
    pub topic_literal: Option<LitStr>,
    pub version: u32,
    /// The functions from each earlier version of the data to the next.
    pub upcasters: Vec<syn::Path>,
    /// The user's method, without the `#[event]` attribute.
    pub method: ImplItemFn,
    /// Creation events have no receiver and return `Self`.
    pub creation: Option<Creation>,
    /// The event's data: the method's arguments, minus an `#[id]`.
    pub fields: Vec<Field>,
}

/// What a creation event knows of the aggregate's id.
pub struct Creation {
    /// The argument marked `#[id]`, if the user chooses the id.
    pub id_arg: Option<Ident>,
}

/// One argument of an event method: a field of the event type.
pub struct Field {
    pub ident: Ident,
    pub ty: Type,
}

impl AggregateImpl {
    /// Parses and checks the impl block. `None` only when it is not an
    /// inherent impl of a named type, where no expansion makes sense.
    pub fn parse(args: TokenStream, mut item: ItemImpl, errors: &mut Errors) -> Option<Self> {
        let args = AggregateArgs::parse(args, errors);
        if let Some((path, _)) = &item.trait_ {
            errors.push(
                path,
                "`#[aggregate]` goes on the aggregate's own `impl` block, not a trait impl",
            );
            return None;
        }
        let Some(ident) = type_ident(&item.self_ty) else {
            errors.push(
                &item.self_ty,
                "`#[aggregate]` needs an `impl` block of a struct, such as `impl Order`",
            );
            return None;
        };
        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            errors.push(
                &item.generics,
                "an aggregate cannot be generic: its events are stored and replayed by name",
            );
        }
        let name = args.name.as_ref().map_or_else(|| ident.to_string(), LitStr::value);

        let mut events = Vec::new();
        let mut items = Vec::new();
        for impl_item in std::mem::take(&mut item.items) {
            match impl_item {
                ImplItem::Fn(method) if has_event_attr(&method.attrs) => {
                    match Event::parse(method, &ident, &name, errors) {
                        Ok(event) => events.push(event),
                        // A rejected event stays a plain method, so that
                        // calls to it do not add errors of their own.
                        Err(method) => items.push(ImplItem::Fn(*method)),
                    }
                }
                mut other => {
                    if let Some(attrs) = item_attrs(&mut other) {
                        for attr in attrs.iter().filter(|a| is_event_attr(a)) {
                            errors.push(attr, "`#[event]` goes on a method (`fn`) of the aggregate");
                        }
                        attrs.retain(|a| !is_event_attr(a));
                    }
                    items.push(other);
                }
            }
        }
        let events = check_unique(events, &mut items, errors);
        item.items = items;
        if !args.entity && !events.iter().any(|e| e.creation.is_some()) {
            errors.push(
                &item.self_ty,
                format!(
                    "`{ident}` has no creation event; add an `#[event(Created)]` method without `self` that returns `Self`, or mark it `#[aggregate(entity)]` if it exists before its first event (an entity)"
                ),
            );
        }
        let enum_ident = format_ident!("{}Event", ident);
        Some(Self {
            item,
            ident,
            name,
            events,
            enum_ident,
        })
    }
}

impl Event {
    /// Parses and checks one event method; gives the method back (without
    /// its `#[event]`) if it cannot be an event.
    fn parse(
        mut method: ImplItemFn,
        aggregate: &Ident,
        aggregate_name: &str,
        errors: &mut Errors,
    ) -> Result<Self, Box<ImplItemFn>> {
        let attrs: Vec<_> = method.attrs.iter().filter(|a| is_event_attr(a)).cloned().collect();
        method.attrs.retain(|a| !is_event_attr(a));
        for extra in attrs.iter().skip(1) {
            errors.push(extra, "an event method takes one `#[event]` attribute");
        }
        let Some(args) = EventArgs::parse(&attrs[0], errors) else {
            return Err(Box::new(method));
        };
        let before = errors.len();
        let sig = &method.sig;
        if let Some(asyncness) = &sig.asyncness {
            errors.push(
                asyncness,
                "an event method cannot be `async`: applying an event only changes state; do async work in a command that calls it",
            );
        }
        if let Some(constness) = &sig.constness {
            errors.push(constness, "an event method cannot be `const`");
        }
        if let Safety::Unsafe(unsafety) = &sig.safety {
            errors.push(unsafety, "an event method cannot be `unsafe`");
        }
        if let Some(abi) = &sig.abi {
            errors.push(abi, "an event method cannot have an `extern` ABI");
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            errors.push(
                &sig.generics,
                "an event method cannot be generic: its arguments are the event's stored data, so they need concrete types",
            );
        }
        if let Some(variadic) = &sig.variadic {
            errors.push(variadic, "an event method cannot be variadic");
        }

        let receiver = sig.receiver();
        let creation = match receiver {
            None => {
                if !returns_self(&sig.output, aggregate) {
                    let at: &dyn quote::ToTokens = match &sig.output {
                        ReturnType::Default => &sig.ident,
                        ReturnType::Type(_, ty) => ty,
                    };
                    errors.push(
                        at,
                        "an event method without `&mut self` creates the aggregate, so it must return `Self`",
                    );
                }
                Some(Creation { id_arg: None })
            }
            Some(receiver) => {
                let by_mut_ref = matches!(receiver.kind, ReceiverKind::Reference(_, _, Some(_)));
                if !by_mut_ref {
                    let what = match receiver.kind {
                        ReceiverKind::Reference(..) => "`&self`",
                        _ => "`self`",
                    };
                    errors.push(
                        receiver,
                        format!("an event method takes `&mut self`, not {what}: applying the event changes the aggregate in place"),
                    );
                }
                if let ReturnType::Type(_, ty) = &sig.output {
                    errors.push(
                        ty,
                        "an event method cannot return a value: the event is its arguments and its effect is the change to `self`; return results from a command that calls it",
                    );
                }
                None
            }
        };

        let event_type = format_ident!("{}{}", aggregate, args.name);
        let mut creation = creation;
        let mut fields = Vec::new();
        for input in method.sig.inputs.iter_mut() {
            let FnArg::Typed(arg) = input else { continue };
            let id_attrs: Vec<_> = arg.attrs.iter().filter(|a| a.path().is_ident("id")).cloned().collect();
            arg.attrs.retain(|a| !a.path().is_ident("id"));
            let ident = match &*arg.pat {
                Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Some(pat.ident.clone()),
                other => {
                    errors.push(
                        other,
                        format!("event arguments must be plain names, because each becomes a field of the event `{event_type}`"),
                    );
                    None
                }
            };
            check_field_type(&arg.ty, errors);
            let Some(ident) = ident else { continue };
            if let Some(id_attr) = id_attrs.first() {
                match &mut creation {
                    Some(Creation { id_arg: id @ None }) => *id = Some(ident),
                    Some(Creation { id_arg: Some(_) }) => {
                        errors.push(id_attr, "a creation event takes at most one `#[id]` argument");
                    }
                    None => errors.push(
                        id_attr,
                        "`#[id]` chooses the id of a new aggregate, so it only goes on a creation event's argument",
                    ),
                }
                continue;
            }
            fields.push(Field {
                ident,
                ty: (*arg.ty).clone(),
            });
        }

        if errors.len() > before {
            return Err(Box::new(method));
        }
        let topic = args
            .topic
            .as_ref()
            .map_or_else(|| format!("{aggregate_name}.{}", args.name), LitStr::value);
        let version = args.version.as_ref().map_or(1, |(number, _)| *number);
        Ok(Self {
            name: args.name,
            type_ident: event_type,
            topic,
            topic_literal: args.topic,
            version,
            upcasters: args.upcasters,
            method,
            creation,
            fields,
        })
    }
}

/// Rejects argument types that cannot be stored event data.
fn check_field_type(ty: &Type, errors: &mut Errors) {
    match ty {
        Type::Reference(_) => errors.push(
            ty,
            "event data is stored and replayed, so it cannot borrow; take an owned type (`String` for `&str`, `Vec<T>` for `&[T]`)",
        ),
        Type::ImplTrait(_) => errors.push(ty, "event data needs a concrete type, not `impl Trait`"),
        Type::Infer(_) => errors.push(ty, "event data needs a concrete type"),
        _ => {}
    }
}

/// Event names and topics must be unique within the aggregate. A repeated
/// event stays a plain method, so that it adds no errors of its own.
fn check_unique(events: Vec<Event>, items: &mut Vec<ImplItem>, errors: &mut Errors) -> Vec<Event> {
    let mut names: HashMap<String, Ident> = HashMap::new();
    let mut topics: HashMap<String, Ident> = HashMap::new();
    let mut unique = Vec::with_capacity(events.len());
    for event in events {
        if let Some(first) = names.get(&event.name.to_string()) {
            errors.push(
                &event.name,
                format!(
                    "event `{}` is declared twice in this aggregate, also by `fn {first}`; give each event its own name",
                    event.name
                ),
            );
        } else if let Some(first) = topics.get(&event.topic) {
            let at: &dyn quote::ToTokens = match &event.topic_literal {
                Some(literal) => literal,
                None => &event.name,
            };
            errors.push(
                at,
                format!(
                    "topic `{}` is already used by event `{first}`; give this event another topic with `topic = \"...\"`",
                    event.topic
                ),
            );
        } else {
            names.insert(event.name.to_string(), event.method.sig.ident.clone());
            topics.insert(event.topic.clone(), event.name.clone());
            unique.push(event);
            continue;
        }
        items.push(ImplItem::Fn(event.method));
    }
    unique
}

fn has_event_attr(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(is_event_attr)
}

fn is_event_attr(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("event")
}

fn item_attrs(item: &mut ImplItem) -> Option<&mut Vec<syn::Attribute>> {
    match item {
        ImplItem::Const(c) => Some(&mut c.attrs),
        ImplItem::Type(t) => Some(&mut t.attrs),
        ImplItem::Macro(m) => Some(&mut m.attrs),
        ImplItem::Fn(f) => Some(&mut f.attrs),
        _ => None,
    }
}

/// The identifier of `Order` in `impl Order`.
fn type_ident(ty: &Type) -> Option<Ident> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    }
}

/// Whether a return type is `Self` or the aggregate's own name.
fn returns_self(output: &ReturnType, aggregate: &Ident) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(path) if path.qself.is_none() => path.path.is_ident("Self") || path.path.is_ident(aggregate),
            _ => false,
        },
        ReturnType::Default => false,
    }
}
