//! `#[aggregate]` on the struct: adds the hidden field that holds identity,
//! version, timestamps and pending events.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote};
use syn::{Fields, ItemStruct};

use super::META_FIELD;
use crate::errors::Errors;

pub fn expand(args: TokenStream, mut item: ItemStruct, errors: &mut Errors) -> TokenStream {
    if !args.is_empty() {
        errors.push(
            &args,
            "`#[aggregate]` on a struct takes no arguments; put them on its `impl` block",
        );
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(
            &item.generics,
            "an aggregate cannot be generic: its events are stored and replayed by name",
        );
        return item.into_token_stream();
    }
    let named = match &mut item.fields {
        Fields::Named(named) => named,
        Fields::Unnamed(fields) => {
            errors.push(
                &*fields,
                "`#[aggregate]` needs a struct with named fields, not a tuple struct; name the fields",
            );
            return item.into_token_stream();
        }
        Fields::Unit => {
            errors.push(
                &item.ident,
                format!(
                    "`#[aggregate]` needs a struct with named fields, not a unit struct; write `struct {} {{}}`",
                    item.ident
                ),
            );
            return item.into_token_stream();
        }
    };

    let ident = &item.ident;
    let field = format_ident!("{META_FIELD}");
    let meta_type =
        quote!(::eventsourcing::__private::AggregateMeta<<#ident as ::eventsourcing::__private::Aggregate>::Event>);
    // Serde must leave the field alone if the struct derives it.
    let serde_skip = derives_serde(&item.attrs).then(|| quote!(#[serde(skip)]));
    named.named.push(syn::parse_quote! {
        #[doc(hidden)]
        #serde_skip
        #field: #meta_type
    });

    let vis = &item.vis;
    let vis_macro = visibility_macro(ident);
    quote! {
        #item

        // Everything the `impl` block generates passes through here, and its
        // event types take the struct's visibility: more public would leak a
        // private aggregate, less public would hide events that callers of
        // the aggregate need. Without `#[aggregate]` on the struct this
        // macro is missing, and nothing generated can fail in a way the user
        // cannot relate to that one cause.
        #[doc(hidden)]
        macro_rules! #vis_macro {
            ({ $($item:tt)* } $([ $(#[$attr:meta])* ; $($typed:tt)* ])*) => {
                $($item)*
                $( $(#[$attr])* #vis $($typed)* )*
            };
        }

        #[automatically_derived]
        impl ::eventsourcing::__private::HasMeta for #ident {
            fn __es_meta(&self) -> &#meta_type {
                &self.#field
            }

            fn __es_meta_mut(&mut self) -> &mut #meta_type {
                &mut self.#field
            }
        }
    }
}

/// The macro through which the impl block gives its generated types the
/// struct's visibility.
pub fn visibility_macro(ident: &syn::Ident) -> syn::Ident {
    format_ident!("__es_visibility_of_{}", ident)
}

/// Whether the struct derives `Serialize` or `Deserialize`.
fn derives_serde(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().filter(|attr| attr.path().is_ident("derive")).any(|attr| {
        let mut found = false;
        let _ = attr.parse_nested_meta(|meta| {
            found |= meta
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Serialize" || s.ident == "Deserialize");
            Ok(())
        });
        found
    })
}
