//! Code generation for a checked `#[aggregate]` impl block.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{FnArg, ImplItem, ImplItemFn, Pat};

use super::META_FIELD;
use super::model::{AggregateImpl, Event};
use super::state::visibility_macro;

pub fn expand(model: &AggregateImpl) -> TokenStream {
    let AggregateImpl {
        item,
        ident,
        name,
        events,
        enum_ident,
    } = model;
    let private = quote!(::eventsourcing::__private);
    let vis_macro = visibility_macro(ident);

    let mut item = item.clone();
    for event in events {
        item.items.push(ImplItem::Fn(triggering_method(model, event)));
        item.items.push(ImplItem::Fn(apply_method(model, event)));
    }

    let variants = events.iter().map(|e| {
        let (name, ty, topic) = (&e.name, &e.type_ident, &e.topic);
        let doc = format!("`{topic}`: see [`{ty}`].");
        quote!(#[doc = #doc] #name(#ty))
    });
    let enum_doc = format!("The events of [`{ident}`], one variant per `#[event]` method.");

    let topics: Vec<_> = events.iter().map(|e| &e.topic).collect();
    let names: Vec<_> = events.iter().map(|e| &e.name).collect();
    let type_idents: Vec<_> = events.iter().map(|e| &e.type_ident).collect();
    let version_match = if events.is_empty() {
        quote!(match *self {})
    } else {
        quote!(match self { #(#enum_ident::#names(_) => <#type_idents as #private::EventType>::VERSION,)* })
    };
    let topic_match = if events.is_empty() {
        quote!(match *self {})
    } else {
        quote!(match self { #(#enum_ident::#names(_) => #topics,)* })
    };
    let encode_match = if events.is_empty() {
        quote!(match *self {})
    } else {
        quote!(match self { #(#enum_ident::#names(event) => #private::codec::encode(event),)* })
    };

    let create_arms = events.iter().filter(|e| e.creation.is_some()).map(|e| {
        let (name, ty, apply) = (&e.name, &e.type_ident, apply_ident(e));
        let fields: Vec<_> = e.fields.iter().map(|f| &f.ident).collect();
        let id = e
            .creation
            .as_ref()
            .and_then(|c| c.id_arg.as_ref())
            .map(|_| quote!(__es_id,));
        quote! {
            #enum_ident::#name(#ty { #(#fields),* }) => ::core::option::Option::Some(Self::#apply(#id #(#fields),*)),
        }
    });
    let mutate_arms = events.iter().filter(|e| e.creation.is_none()).map(|e| {
        let (name, ty, apply) = (&e.name, &e.type_ident, apply_ident(e));
        let fields: Vec<_> = e.fields.iter().map(|f| &f.ident).collect();
        quote! {
            #enum_ident::#name(#ty { #(#fields),* }) => {
                self.#apply(#(#fields),*);
                ::core::result::Result::Ok(())
            }
        }
    });
    // Point a missing `#[aggregate]` on the struct at the impl's type.
    let meta = quote_spanned!(item.self_ty.span()=> <Self as #private::HasMeta>::__es_meta(self));
    let meta_mut = quote_spanned!(item.self_ty.span()=> <Self as #private::HasMeta>::__es_meta_mut(self));

    let impls = quote! {
        const _: () = {
            #[automatically_derived]
            impl #private::DomainEvent for #enum_ident {
                const TOPICS: &'static [&'static str] = &[#(#topics),*];

                fn topic(&self) -> &'static str {
                    #topic_match
                }

                fn encode(&self) -> #private::CodecResult<#private::Vec<u8>> {
                    #encode_match
                }

                fn version(&self) -> u32 {
                    #version_match
                }

                fn decode(topic: &str, version: u32, state: &[u8]) -> ::core::option::Option<#private::CodecResult<Self>> {
                    match topic {
                        #(#topics => ::core::option::Option::Some(
                            <#type_idents as #private::EventType>::__decode_state(version, state).map(#enum_ident::#names)
                        ),)*
                        _ => ::core::option::Option::None,
                    }
                }
            }

            #[automatically_derived]
            impl #private::Aggregate for #ident {
                type Event = #enum_ident;
                const NAME: &'static str = #name;
                const PATH: &'static str = ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident));

                fn meta(&self) -> &#private::AggregateMeta<#enum_ident> {
                    #meta
                }

                fn meta_mut(&mut self) -> &mut #private::AggregateMeta<#enum_ident> {
                    #meta_mut
                }

                #[allow(unused_variables)]
                fn create(__es_id: #private::Uuid, __es_event: #enum_ident) -> ::core::option::Option<Self> {
                    #[allow(unreachable_patterns)]
                    match __es_event {
                        #(#create_arms)*
                        _ => ::core::option::Option::None,
                    }
                }

                fn mutate(&mut self, __es_event: #enum_ident) -> ::core::result::Result<(), #private::NotApplicable> {
                    #[allow(unreachable_patterns)]
                    match __es_event {
                        #(#mutate_arms)*
                        _ => ::core::result::Result::Err(#private::NotApplicable),
                    }
                }
            }
        };
    };
    let (event_items, event_types): (Vec<_>, Vec<_>) = events.iter().map(|event| event_type(model, event)).unzip();
    let has_meta_check = quote_spanned!(item.self_ty.span()=> #private::assert_has_meta::<#ident>(););

    quote! {
        // Reported here, once, when the struct lacks `#[aggregate]` (and
        // with it the macro below).
        const _: () = { #has_meta_check };

        #vis_macro! {
            {
                #item

                #(#event_items)*

                #impls
            }
            [
                #[doc = #enum_doc]
                #[derive(::core::clone::Clone, ::core::fmt::Debug, ::core::cmp::PartialEq)];
                enum #enum_ident {
                    #(#variants,)*
                }
            ]
            #(#event_types)*
        }
    }
}

fn apply_ident(event: &Event) -> syn::Ident {
    format_ident!("__es_apply_{}", event.method.sig.ident)
}

/// The event's `EventType` impl and topic registration, and its named type
/// (which takes the struct's visibility).
fn event_type(model: &AggregateImpl, event: &Event) -> (TokenStream, TokenStream) {
    let private = quote!(::eventsourcing::__private);
    let (ident, enum_ident) = (&model.ident, &model.enum_ident);
    let (ty, name, topic, version) = (&event.type_ident, &event.name, &event.topic, event.version);
    let method = &event.method.sig.ident;
    // As written, so that a wrong signature is reported at the user's path.
    let upcasters = &event.upcasters;
    let doc = format!("The event `{topic}` of [`{ident}`], triggered by `{ident}::{method}`.");
    let type_name = ty.to_string();
    let aggregate_name = &model.name;
    let fields = event.fields.iter().map(|f| {
        let (field, field_ty) = (&f.ident, &f.ty);
        let doc = format!("The `{field}` given to `{ident}::{method}`.");
        // Spanned at the user's type, so that a type serde cannot handle
        // is reported on the argument that declared it.
        quote_spanned!(field_ty.span()=> #[doc = #doc] pub #field: #field_ty)
    });
    // One check per field, on the user's type, before serde's derives report
    // the same thing from inside their expansion.
    let data_checks = event.fields.iter().map(|f| {
        let field_ty = &f.ty;
        quote_spanned!(field_ty.span()=> #private::assert_event_data::<#field_ty>();)
    });
    let named_type = quote! {[
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug, ::core::cmp::PartialEq, #private::serde::Serialize, #private::serde::Deserialize)]
        #[serde(crate = "::eventsourcing::__private::serde")];
        struct #ty {
            #(#fields,)*
        }
    ]};
    let items = quote! {
        const _: () = { #(#data_checks)* };

        const _: () = {
            #[automatically_derived]
            impl #private::EventType for #ty {
                type Aggregate = #ident;
                const TOPIC: &'static str = #topic;
                const VERSION: u32 = #version;
                const UPCASTERS: &'static [#private::codec::Upcaster] = &[#(#upcasters),*];

                fn into_event(self) -> #enum_ident {
                    #enum_ident::#name(self)
                }
            }

            #[automatically_derived]
            impl ::core::convert::From<#ty> for #enum_ident {
                fn from(event: #ty) -> Self {
                    #enum_ident::#name(event)
                }
            }

            #private::inventory::submit! {
                #private::TopicRegistration {
                    topic: #topic,
                    event_type: #type_name,
                    aggregate: #aggregate_name,
                    module: ::core::module_path!(),
                    version: #version,
                }
            }
        };
    };
    (items, named_type)
}

/// The method the user calls: builds the event, applies it, keeps it pending.
fn triggering_method(model: &AggregateImpl, event: &Event) -> ImplItemFn {
    let private = quote!(::eventsourcing::__private);
    let (enum_ident, ty, name) = (&model.enum_ident, &event.type_ident, &event.name);
    let apply = apply_ident(event);
    let fields: Vec<_> = event.fields.iter().map(|f| &f.ident).collect();

    let mut method = event.method.clone();
    // The arguments move into the event; `mut` belongs to the body, not here.
    for input in method.sig.inputs.iter_mut() {
        if let FnArg::Typed(arg) = input
            && let Pat::Ident(pat) = &mut *arg.pat
        {
            pat.mutability = None;
        }
    }
    let body = match &event.creation {
        Some(creation) => {
            let (id, id_arg) = match &creation.id_arg {
                Some(id) => (quote!(#id), Some(quote!(__es_id,))),
                None => (quote!(#private::new_id()), None),
            };
            quote! {{
                let __es_id: #private::Uuid = #id;
                let __es_event = #ty { #(#fields),* };
                let #ty { #(#fields),* } = ::core::clone::Clone::clone(&__es_event);
                let __es_aggregate = Self::#apply(#id_arg #(#fields),*);
                #private::created(__es_aggregate, __es_id, #enum_ident::#name(__es_event))
            }}
        }
        None => quote! {{
            let __es_event = #ty { #(#fields),* };
            let #ty { #(#fields),* } = ::core::clone::Clone::clone(&__es_event);
            self.#apply(#(#fields),*);
            #private::triggered(self, #enum_ident::#name(__es_event));
        }},
    };
    method.block = syn::parse_quote!(#body);
    method
}

/// The user's body, kept as a hidden method that replay calls too.
fn apply_method(model: &AggregateImpl, event: &Event) -> ImplItemFn {
    let mut method = event.method.clone();
    method.sig.ident = apply_ident(event);
    method.vis = syn::Visibility::Inherited;
    method.attrs.retain(|a| !a.path().is_ident("doc"));
    method.attrs.push(syn::parse_quote!(#[doc(hidden)]));
    // Arguments the body does not read are still the event's data (or, for
    // `#[id]`, the aggregate's id): not a mistake.
    method.attrs.push(syn::parse_quote!(#[allow(unused_variables)]));
    if event.creation.is_some() {
        // `Self { .. }` in a constructor cannot name the hidden field.
        AddMetaField { ident: &model.ident }.visit_block_mut(&mut method.block);
    }
    method
}

/// Adds the hidden field to struct literals of the aggregate without `..rest`.
struct AddMetaField<'a> {
    ident: &'a syn::Ident,
}

impl VisitMut for AddMetaField<'_> {
    fn visit_expr_struct_mut(&mut self, expr: &mut syn::ExprStruct) {
        syn::visit_mut::visit_expr_struct_mut(self, expr);
        let names_aggregate = expr.qself.is_none() && (expr.path.is_ident("Self") || expr.path.is_ident(self.ident));
        if names_aggregate && expr.rest.is_none() {
            let field = format_ident!("{META_FIELD}");
            if !expr.fields.empty_or_trailing() {
                expr.fields.push_punct(Default::default());
            }
            expr.fields
                .push(syn::parse_quote!(#field: ::core::default::Default::default()));
        }
    }

    // Closures and nested items have their own `Self`.
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}
