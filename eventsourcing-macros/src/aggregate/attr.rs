//! The arguments of `#[aggregate(...)]` and `#[event(...)]`.

use proc_macro2::TokenStream;
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, Ident, LitInt, LitStr, Token};

use crate::errors::Errors;

/// `#[aggregate]`, `#[aggregate(name = "...")]` or `#[aggregate(entity)]`
/// on the impl block.
#[derive(Default)]
pub struct AggregateArgs {
    /// The aggregate's name in topics and messages.
    pub name: Option<LitStr>,
    /// An entity, which exists before its first event: it needs no
    /// creation event.
    pub entity: bool,
}

impl AggregateArgs {
    pub fn parse(args: TokenStream, errors: &mut Errors) -> Self {
        let mut parsed = Self::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                let value: LitStr = meta.value()?.parse()?;
                if parsed.name.is_some() {
                    errors.push(&meta.path, "duplicate aggregate attribute `name`");
                } else if !is_identifier(&value.value()) {
                    errors.push(&value, "the aggregate name must be an identifier, such as `Order`");
                } else {
                    parsed.name = Some(value);
                }
                Ok(())
            } else if meta.path.is_ident("entity") {
                if parsed.entity {
                    errors.push(&meta.path, "duplicate aggregate attribute `entity`");
                }
                parsed.entity = true;
                Ok(())
            } else {
                let key = meta.path.get_ident().map_or_else(|| "?".to_owned(), Ident::to_string);
                errors.push(
                    &meta.path,
                    format!("unknown aggregate attribute `{key}`; the known ones are `name = \"…\"` and `entity`"),
                );
                // Skip the value, if any, to report later mistakes too.
                if meta.input.peek(Token![=]) {
                    let _: Token![=] = meta.input.parse()?;
                    let _: syn::Expr = meta.input.parse()?;
                }
                Ok(())
            }
        });
        if let Err(error) = parser.parse2(args) {
            errors.push_error(error);
        }
        parsed
    }
}

/// `#[event(Name, topic = "...", version = N, upcasters(from_v1, ...))]`.
pub struct EventArgs {
    pub name: Ident,
    pub topic: Option<LitStr>,
    pub version: Option<(u32, LitInt)>,
    /// The functions from each earlier version to the next, in order.
    pub upcasters: Vec<syn::Path>,
}

impl EventArgs {
    /// Parses one `#[event]` attribute; `None` if it is too broken to use.
    pub fn parse(attr: &Attribute, errors: &mut Errors) -> Option<Self> {
        let syn::Meta::List(list) = &attr.meta else {
            errors.push(attr, "expected the event's name, as in `#[event(Reserved)]`");
            return None;
        };
        let parsed = (|input: ParseStream| Self::parse_list(input, errors)).parse2(list.tokens.clone());
        match parsed {
            Ok(Some(args)) => Some(args),
            Ok(None) => None,
            Err(error) => {
                errors.push_error(error);
                None
            }
        }
    }

    fn parse_list(input: ParseStream, errors: &mut Errors) -> syn::Result<Option<Self>> {
        if input.is_empty() {
            return Err(syn::Error::new(
                input.span(),
                "expected the event's name, as in `#[event(Reserved)]`",
            ));
        }
        let name: Ident = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), "expected the event's name, as in `#[event(Reserved)]`"))?;
        if input.peek(Token![=]) {
            return Err(syn::Error::new(
                name.span(),
                "the event's name comes first, as in `#[event(Reserved, topic = \"...\")]`",
            ));
        }
        let mut args = Self {
            name,
            topic: None,
            version: None,
            upcasters: Vec::new(),
        };
        let mut upcasters_key: Option<Ident> = None;
        while !input.is_empty() {
            let _: Token![,] = input.parse()?;
            if input.is_empty() {
                break;
            }
            let key: Ident = input.parse()?;
            if key == "upcasters" {
                let content;
                syn::parenthesized!(content in input);
                let paths = content.parse_terminated(syn::Path::parse_mod_style, Token![,])?;
                if upcasters_key.is_some() {
                    errors.push(&key, "duplicate event attribute `upcasters`");
                }
                args.upcasters = paths.into_iter().collect();
                upcasters_key = Some(key);
                continue;
            }
            let _: Token![=] = input.parse()?;
            match key.to_string().as_str() {
                "topic" => {
                    let topic: LitStr = input.parse()?;
                    if args.topic.is_some() {
                        errors.push(&key, "duplicate event attribute `topic`");
                    } else if topic.value().trim().is_empty() {
                        errors.push(&topic, "an event topic cannot be empty");
                    } else {
                        args.topic = Some(topic);
                    }
                }
                "version" => {
                    let version: LitInt = input.parse()?;
                    match version.base10_parse::<u32>() {
                        _ if args.version.is_some() => errors.push(&key, "duplicate event attribute `version`"),
                        // Stores keep it as a 32-bit signed integer.
                        Ok(number) if number > i32::MAX as u32 => errors.push(
                            &version,
                            format!("an event version is at most {}, the largest a store keeps", i32::MAX),
                        ),
                        Ok(number) if number >= 1 => args.version = Some((number, version)),
                        _ => errors.push(&version, "an event version is a whole number from 1"),
                    }
                }
                other => {
                    errors.push(
                        &key,
                        format!(
                            "unknown event attribute `{other}`; the known ones are `topic`, `version` and `upcasters(...)`"
                        ),
                    );
                    let _: syn::Expr = input.parse()?;
                }
            }
        }
        args.check_upcasters(upcasters_key.as_ref(), errors);
        Ok(Some(args))
    }

    /// Data stored at each earlier version needs one upcaster to the next.
    fn check_upcasters(&self, key: Option<&Ident>, errors: &mut Errors) {
        const SIGNATURE: &str =
            "each a `fn(&mut serde_json::Value)` that changes stored state from one version to the next";
        match (&self.version, key) {
            (Some((version, literal)), _) if *version > 1 && self.upcasters.len() != *version as usize - 1 => {
                let needed = *version as usize - 1;
                let names: Vec<String> = (1..=needed).map(|n| format!("from_v{n}")).collect();
                let older = if needed == 1 {
                    "data stored at version 1".to_owned()
                } else {
                    format!("data stored at versions 1 to {needed}")
                };
                errors.push(
                    literal,
                    format!(
                        "{older} must be upcast to version {version}: name {needed} upcaster{} in order, \
                         `upcasters({})`, {SIGNATURE}; {} given",
                        if needed == 1 { "" } else { "s" },
                        names.join(", "),
                        self.upcasters.len()
                    ),
                );
            }
            (None | Some((1, _)), Some(key)) => errors.push(
                key,
                format!(
                    "upcasters bring data stored at older versions up to the event's version, so give the version too, \
                     as in `version = 2, upcasters(from_v1)`, {SIGNATURE}"
                ),
            ),
            _ => {}
        }
    }
}

pub fn is_identifier(text: &str) -> bool {
    syn::parse_str::<Ident>(text).is_ok()
}
