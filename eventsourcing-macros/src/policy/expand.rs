//! Code generation for a checked `#[policy]` impl block: the `Process`
//! impl, with the dispatch from topic to handler and the constants that
//! `system!` checks.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::model::{Policy, type_key};

pub fn expand(policy: &Policy) -> TokenStream {
    let private = quote!(::eventsourcing::__private);
    let Policy {
        item,
        self_ty,
        name,
        aggregates,
        handlers,
    } = policy;

    let records = aggregates.iter().map(|aggregate| {
        quote_spanned! {aggregate.span()=>
            #private::Records {
                aggregate: <#aggregate as #private::Aggregate>::NAME,
                path: <#aggregate as #private::Aggregate>::PATH,
                topics: <<#aggregate as #private::Aggregate>::Event as #private::DomainEvent>::TOPICS,
            }
        }
    });
    // What lets the repository hand out each declared aggregate, and
    // nothing else.
    // (`NoAggregates` when there are none, so that the error about an
    // undeclared one says that the application declares nothing.)
    let mut declares: Vec<TokenStream> = aggregates
        .iter()
        .map(|aggregate| {
            quote_spanned! {aggregate.span()=>
                #[automatically_derived]
                impl #private::Declares<#aggregate> for #self_ty {}
            }
        })
        .collect();
    if aggregates.is_empty() {
        declares.push(quote! {
            #[automatically_derived]
            impl #private::Declares<#private::NoAggregates> for #self_ty {}
        });
    }
    let type_path = quote!(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#self_ty)
    ));
    let type_identity = quote!(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#self_ty),
        " at ",
        ::core::file!(),
        ":",
        ::core::line!(),
        ":",
        ::core::column!()
    ));
    let handler_infos = handlers.iter().map(|h| {
        let (method, ty) = (h.method.to_string(), &h.event_type);
        let type_name = type_key(ty);
        quote_spanned! {ty.span()=>
            #private::Handler {
                method: #method,
                event_type: #type_name,
                topic: <#ty as #private::EventType>::TOPIC,
                aggregate: <<#ty as #private::EventType>::Aggregate as #private::Aggregate>::NAME,
            }
        }
    });
    let dispatch = handlers.iter().map(|h| {
        let (method, ty) = (&h.method, &h.event_type);
        // Spanned at the user's types, where a mistake in them is reported.
        let decode = quote_spanned!(ty.span()=> <#ty as #private::EventType>::__notified);
        let output = &h.output;
        let result = quote_spanned!(output.span()=> #private::handler_result::<#output>);
        quote! {
            if topic == <#ty as #private::EventType>::TOPIC {
                return ::core::option::Option::Some(#private::Box::pin(async move {
                    let event = #decode(upstream, notification)?;
                    #result(Self::#method(self, &event, repo).await)
                }));
            }
        }
    });

    quote! {
        #item

        const _: () = {
            #[automatically_derived]
            impl #private::Process for #self_ty {
                const NAME: &'static str = #name;
                const RECORDS: &'static [#private::Records] = &[#(#records),*];
                const HANDLERS: &'static [#private::Handler] = &[#(#handler_infos),*];
                #[doc(hidden)]
                const __TYPE: &'static str = #type_identity;
                #[doc(hidden)]
                const __PATH: &'static str = #type_path;

                // `Some` exactly when the type implements `Default`: see
                // `DefaultProbe`.
                #[doc(hidden)]
                #[allow(clippy::needless_borrow)]
                fn __default_maker() -> ::core::option::Option<fn() -> Self> {
                    #[allow(unused_imports)]
                    use #private::{ViaDefault as _, WithoutDefault as _};
                    (&&#private::DefaultProbe::<Self>::new()).__default_maker()
                }

                #[allow(unused_variables)]
                fn handle<'a>(
                    &'a self,
                    upstream: &'static str,
                    notification: &'a #private::Notification,
                    repo: &'a mut #private::Repo<Self>,
                ) -> ::core::option::Option<#private::Handling<'a>> {
                    let topic = notification.event.topic.as_str();
                    #(#dispatch)*
                    ::core::option::Option::None
                }
            }

            #(#declares)*
        };
    }
}
