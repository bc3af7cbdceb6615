//! Collecting every mistake in the input, so the user sees all at once.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// Errors found so far, each on the user's offending tokens.
#[derive(Default)]
pub struct Errors(Vec<syn::Error>);

impl Errors {
    /// Records `message` on the tokens of `at`.
    pub fn push(&mut self, at: impl ToTokens, message: impl Display) {
        self.0.push(syn::Error::new_spanned(at, message));
    }

    /// Records an error already made.
    pub fn push_error(&mut self, error: syn::Error) {
        self.0.push(error);
    }

    /// How many errors so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The errors as `compile_error!` invocations, to emit beside whatever
    /// expansion could still be made.
    pub fn to_compile_errors(&self) -> TokenStream {
        self.0.iter().map(syn::Error::to_compile_error).collect()
    }
}
