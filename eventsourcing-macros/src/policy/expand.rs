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
                topics: <<#aggregate as #private::Aggregate>::Event as #private::DomainEvent>::TOPICS,
            }
        }
    });
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

                #[allow(unused_variables)]
                fn handle<'a>(
                    &'a self,
                    upstream: &'static str,
                    notification: &'a #private::Notification,
                    repo: &'a mut #private::Repo,
                ) -> ::core::option::Option<#private::Handling<'a>> {
                    let topic = notification.event.topic.as_str();
                    #(#dispatch)*
                    ::core::option::Option::None
                }
            }
        };
    }
}
