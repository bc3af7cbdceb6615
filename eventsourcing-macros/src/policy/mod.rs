//! `#[policy]` on a process application's impl block of handlers.

mod expand;
mod model;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

use crate::errors::Errors;

pub fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let output = match syn::parse2::<syn::Item>(input) {
        Ok(syn::Item::Impl(item)) => match model::Policy::parse(args, item.clone(), &mut errors) {
            Some(policy) => expand::expand(&policy),
            None => item.into_token_stream(),
        },
        Ok(other) => {
            errors.push(
                &other,
                "`#[policy]` goes on the `impl` block of a process application, whose methods handle upstream events",
            );
            other.into_token_stream()
        }
        Err(error) => return error.to_compile_error(),
    };
    let errors = errors.to_compile_errors();
    quote!(#errors #output)
}
