//! The model of a `#[policy]` impl block: the application, the aggregates
//! it records, and its handlers, checked.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, LitStr, Pat, Token, Type};

use crate::errors::Errors;

pub struct Policy {
    pub item: ItemImpl,
    /// The application type.
    pub self_ty: Type,
    /// The application's name (its tables' prefix).
    pub name: LitStr,
    pub aggregates: Vec<syn::Path>,
    pub handlers: Vec<Handler>,
}

pub struct Handler {
    pub method: syn::Ident,
    /// `T` in `&Notified<T>`.
    pub event_type: Type,
    /// The declared return type, checked to be a `Result`.
    pub output: Type,
}

impl Policy {
    /// Parses and checks; `None` if nothing can be generated.
    pub fn parse(args: TokenStream, item: ItemImpl, errors: &mut Errors) -> Option<Self> {
        let (name, aggregates) = parse_args(args, &item, errors);
        if let Some((path, _)) = &item.trait_ {
            errors.push(
                path,
                "`#[policy]` goes on an inherent `impl` block of the application type, not a trait impl",
            );
            return None;
        }
        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            errors.push(
                &item.generics,
                "a process application cannot be generic: the runner makes one of it by name",
            );
            return None;
        }
        let self_ty = (*item.self_ty).clone();
        let name = match name {
            Some(name) => name,
            None => match &self_ty {
                Type::Path(path) if path.qself.is_none() => {
                    let ident = &path.path.segments.last()?.ident;
                    LitStr::new(&ident.to_string(), ident.span())
                }
                other => {
                    errors.push(
                        other,
                        "`#[policy]` needs a named type; give it a name with `name = \"…\"`",
                    );
                    return None;
                }
            },
        };
        let self_key = type_key(&self_ty);
        let mut handlers: Vec<Handler> = Vec::new();
        for impl_item in &item.items {
            if let ImplItem::Fn(method) = impl_item
                && let Some(handler) = parse_handler(method, &self_key, errors)
            {
                let key = type_key(&handler.event_type);
                if let Some(first) = handlers.iter().find(|h| type_key(&h.event_type) == key) {
                    errors.push(
                        &handler.event_type,
                        format!(
                            "`{key}` is already handled by `{}`; a policy has one handler per event type",
                            first.method
                        ),
                    );
                    continue;
                }
                handlers.push(handler);
            }
        }
        let mut item = item;
        type_bare_repos(&mut item);
        Some(Self {
            self_ty,
            name,
            aggregates: aggregates.unwrap_or_default(),
            handlers,
            item,
        })
    }
}

/// `aggregates(A, B)` and `name = "…"`.
fn parse_args(args: TokenStream, item: &ItemImpl, errors: &mut Errors) -> (Option<LitStr>, Option<Vec<syn::Path>>) {
    let mut name: Option<LitStr> = None;
    let mut aggregates: Option<Vec<syn::Path>> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("aggregates") {
            let content;
            syn::parenthesized!(content in meta.input);
            let paths = content.parse_terminated(syn::Path::parse_mod_style, Token![,])?;
            if aggregates.is_some() {
                errors.push(&meta.path, "duplicate policy attribute `aggregates`");
            }
            let mut distinct: Vec<syn::Path> = Vec::new();
            for path in paths {
                let key = path_key(&path);
                if distinct.iter().any(|known| path_key(known) == key) {
                    errors.push(
                        &path,
                        format!("`{key}` is already in `aggregates(...)`; name each aggregate once"),
                    );
                    continue;
                }
                distinct.push(path);
            }
            aggregates = Some(distinct);
            Ok(())
        } else if meta.path.is_ident("name") {
            let value: LitStr = meta.value()?.parse()?;
            if name.is_some() {
                errors.push(&meta.path, "duplicate policy attribute `name`");
            }
            name = Some(value);
            Ok(())
        } else {
            let key = meta
                .path
                .get_ident()
                .map_or_else(|| "?".to_owned(), ToString::to_string);
            errors.push(
                &meta.path,
                format!("unknown policy attribute `{key}`; the known ones are `aggregates(...)` and `name = \"…\"`"),
            );
            if meta.input.peek(Token![=]) {
                let _: Token![=] = meta.input.parse()?;
                let _: syn::Expr = meta.input.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _content;
                syn::parenthesized!(_content in meta.input);
            }
            Ok(())
        }
    });
    if let Err(error) = parser.parse2(args) {
        errors.push_error(error);
        // Already reported; do not also report a missing `aggregates`.
        return (name, Some(aggregates.unwrap_or_default()));
    }
    if aggregates.is_none() {
        errors.push(
            &item.self_ty,
            "say which aggregates this application records: `#[policy(aggregates(Order, ...))]` (or `aggregates()` for none)",
        );
    }
    (name, aggregates)
}

/// A method is a handler if it takes `&Notified<T>` or `&mut Repo…`; then
/// its whole signature is checked. `self_key` is the application type as
/// text, which `Repo<…>` may name instead of `Self`.
fn parse_handler(method: &ImplItemFn, self_key: &str, errors: &mut Errors) -> Option<Handler> {
    let sig = &method.sig;
    let typed: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(arg) => Some(arg),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let notified = typed.iter().find_map(|arg| notified_type(&arg.ty));
    let repo = typed.iter().any(|arg| repo_type(&arg.ty).is_some());
    if notified.is_none() && !repo {
        return None;
    }
    let before = errors.len();
    let ident = &sig.ident;
    if sig.asyncness.is_none() {
        errors.push(
            sig.fn_token,
            format!("the handler `{ident}` must be `async fn`: `async fn {ident}(&self, event: &Notified<…>, repo: &mut Repo<Self>) -> Result<()>`"),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(
            &sig.generics,
            format!("the handler `{ident}` cannot be generic: it is chosen by the stored event's topic"),
        );
    }
    match sig.receiver() {
        Some(receiver) if matches!(receiver.kind, syn::ReceiverKind::Reference(_, _, None)) => {}
        Some(receiver) => errors.push(
            receiver,
            format!("the handler `{ident}` takes `&self`: the runner shares one policy value, and state belongs in aggregates"),
        ),
        None => errors.push(
            ident,
            format!("the handler `{ident}` takes `&self` first: `async fn {ident}(&self, event: &Notified<…>, repo: &mut Repo<Self>)`"),
        ),
    }
    let expected = "`(&self, event: &Notified<EventType>, repo: &mut Repo<Self>)`";
    match typed.as_slice() {
        [event, repo] => {
            if notified_type(&event.ty).is_none() {
                errors.push(
                    &event.ty,
                    format!("the handler `{ident}` takes the event as `&Notified<EventType>`, such as `&Notified<OrderCreated>`"),
                );
            }
            match repo_type(&repo.ty) {
                None => errors.push(
                    &repo.ty,
                    format!("the handler `{ident}` takes the repository as `&mut Repo<Self>`"),
                ),
                Some(RepoType::Bare(path)) => errors.push(
                    path,
                    format!(
                        "write `&mut Repo<Self>`: the repository is typed by its application, so that the handler `{ident}` can get and add only the aggregates that `#[policy(aggregates(...))]` declares"
                    ),
                ),
                Some(RepoType::Of(of)) if type_key(of) != "Self" && type_key(of) != self_key => {
                    errors.push(
                        of,
                        format!(
                            "the handler `{ident}` takes this application's repository, `&mut Repo<Self>`, not `Repo<{}>`",
                            type_key(of)
                        ),
                    )
                }
                Some(RepoType::Of(_)) => {}
            }
            for arg in [event, repo] {
                if !matches!(&*arg.pat, Pat::Ident(_) | Pat::Wild(_)) {
                    errors.push(&arg.pat, "a handler's arguments are plain names");
                }
            }
        }
        _ => errors.push(&sig.inputs, format!("the handler `{ident}` takes {expected}")),
    }
    let output = match &sig.output {
        syn::ReturnType::Type(_, ty) => (**ty).clone(),
        syn::ReturnType::Default => {
            errors.push_error(syn::Error::new(
                sig.paren_token.span.close(),
                format!("the handler `{ident}` returns `Result<()>`, so that a failure rolls back its notification"),
            ));
            syn::parse_quote!(())
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(Handler {
        method: ident.clone(),
        event_type: notified?.clone(),
        output,
    })
}

/// `T` if `ty` is `&Notified<T>`.
fn notified_type(ty: &Type) -> Option<&Type> {
    let Type::Reference(reference) = ty else {
        return None;
    };
    if reference.mutability.is_some() {
        return None;
    }
    let Type::Path(path) = &*reference.elem else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Notified" {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            syn::GenericArgument::Type(ty) => Some(ty),
            _ => None,
        },
        _ => None,
    }
}

/// How a `&mut Repo…` argument names the repository.
enum RepoType<'a> {
    /// `&mut Repo`, without its application.
    Bare(&'a syn::Path),
    /// `&mut Repo<T>`.
    Of(&'a Type),
}

/// The repository in `ty`, if `ty` is `&mut Repo` or `&mut Repo<T>`.
fn repo_type(ty: &Type) -> Option<RepoType<'_>> {
    let Type::Reference(reference) = ty else {
        return None;
    };
    reference.mutability?;
    let Type::Path(path) = &*reference.elem else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Repo" {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::None => Some(RepoType::Bare(&path.path)),
        syn::PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            syn::GenericArgument::Type(of) => Some(RepoType::Of(of)),
            _ => Some(RepoType::Bare(&path.path)),
        },
        _ => Some(RepoType::Bare(&path.path)),
    }
}

/// Makes each `&mut Repo` (reported already) `&mut Repo<Self>`, so that
/// the compiler does not report it a second time.
fn type_bare_repos(item: &mut ItemImpl) {
    for impl_item in &mut item.items {
        let ImplItem::Fn(method) = impl_item else { continue };
        for input in &mut method.sig.inputs {
            if let FnArg::Typed(arg) = input
                && let Some(RepoType::Bare(_)) = repo_type(&arg.ty)
                && let Type::Reference(reference) = &mut *arg.ty
                && let Type::Path(path) = &mut *reference.elem
                && let Some(last) = path.path.segments.last_mut()
            {
                last.arguments = syn::PathArguments::AngleBracketed(syn::parse_quote!(<Self>));
            }
        }
    }
}

/// A path as text, to find an aggregate named twice.
fn path_key(path: &syn::Path) -> String {
    quote::ToTokens::to_token_stream(path).to_string().replace(' ', "")
}

/// A type as text, to compare handlers' event types.
pub fn type_key(ty: &Type) -> String {
    quote::ToTokens::to_token_stream(ty).to_string().replace(' ', "")
}
