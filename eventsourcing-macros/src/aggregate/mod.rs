//! `#[aggregate]` on a struct (the state) and on its impl block (the events).

mod attr;
mod expand;
mod model;
mod state;

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::errors::Errors;

/// The name of the field `#[aggregate]` adds to the struct.
const META_FIELD: &str = "__es_meta";

pub fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = match syn::parse2::<syn::Item>(input.clone()) {
        Ok(item) => item,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = Errors::default();
    let output = match item {
        syn::Item::Struct(item) => state::expand(args, item, &mut errors),
        syn::Item::Impl(item) => match model::AggregateImpl::parse(args, item, &mut errors) {
            Some(model) => expand::expand(&model),
            None => input,
        },
        syn::Item::Enum(item) => {
            errors.push(
                item.enum_token,
                "`#[aggregate]` goes on a struct with named fields, not an enum; keep the enum as a field of the struct",
            );
            item.into_token_stream()
        }
        other => {
            errors.push(
                &other,
                "`#[aggregate]` goes on a struct with named fields and on its `impl` block with `#[event]` methods",
            );
            other.into_token_stream()
        }
    };
    let errors = errors.to_compile_errors();
    quote::quote!(#errors #output)
}
