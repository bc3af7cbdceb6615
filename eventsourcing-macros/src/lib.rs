//! Procedural macros for [`eventsourcing`](https://docs.rs/eventsourcing).
//!
//! Use them through the `eventsourcing` crate, which re-exports them; the
//! code they generate names the runtime through `::eventsourcing::__private`
//! so that it works whatever the user has imported. Each macro parses its
//! input into a small model, checks it (collecting every mistake, each on
//! the offending tokens), then generates code from the valid parts.

use proc_macro::TokenStream;

mod aggregate;
mod errors;

/// Makes a struct an event-sourced aggregate; see the `eventsourcing` crate.
///
/// Put it on the struct (which gains a hidden field for identity, version,
/// timestamps and pending events) and on the struct's `impl` block, whose
/// `#[event]` methods declare the aggregate's events.
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, input: TokenStream) -> TokenStream {
    aggregate::expand(args.into(), input.into()).into()
}

/// Declares an event: the method's arguments are the event's data and its
/// body is the change the event makes. Only valid inside an `#[aggregate]`
/// impl block, which reads and removes these attributes.
#[proc_macro_attribute]
pub fn event(_args: TokenStream, input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[event]` only works on methods inside an `#[aggregate]` impl block; add `#[aggregate]` to the `impl`",
    )
    .to_compile_error();
    quote::quote!(#error #input).into()
}
