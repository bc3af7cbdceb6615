//! `system!(A => B => A, C => D)`: the model (chains of applications),
//! its syntax errors, and the generated wiring and compile-time checks.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::Token;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;

/// One application as named in the system, at one place.
struct Name {
    path: syn::Path,
    key: String,
}

/// `up => down`, with the arrow's span.
struct Edge {
    up: usize,
    down: usize,
    arrow: Span,
}

#[derive(Default)]
struct Model {
    /// Distinct applications, at their first mention.
    apps: Vec<Name>,
    edges: Vec<Edge>,
}

impl Model {
    fn app(&mut self, path: syn::Path) -> usize {
        let key = path.to_token_stream().to_string().replace(' ', "");
        if let Some(i) = self.apps.iter().position(|app| app.key == key) {
            return i;
        }
        self.apps.push(Name { path, key });
        self.apps.len() - 1
    }
}

pub fn expand(input: TokenStream) -> TokenStream {
    match parse.parse2(input) {
        Ok(model) => generate(&model),
        Err(error) => error.to_compile_error(),
    }
}

const USAGE: &str = "write chains of process applications, such as `system!(Orders => Reservations => Orders, Orders => Payments => Orders)`";

fn parse(input: ParseStream) -> syn::Result<Model> {
    let mut model = Model::default();
    if input.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("a system needs at least one application; {USAGE}"),
        ));
    }
    while !input.is_empty() {
        let mut previous = app_name(input, None)?;
        let mut current = model.app(previous.clone());
        loop {
            if input.is_empty() {
                break;
            }
            if input.peek(Token![,]) {
                let comma: Token![,] = input.parse()?;
                if input.peek(Token![,]) {
                    return Err(syn::Error::new_spanned(
                        comma,
                        "two commas in a row; a comma separates one chain from the next",
                    ));
                }
                break;
            }
            if input.peek(Token![=>]) {
                let arrow: Token![=>] = input.parse()?;
                let next = app_name(input, Some(&arrow))?;
                let down = model.app(next.clone());
                model.edges.push(Edge {
                    up: current,
                    down,
                    arrow: arrow.spans[0],
                });
                previous = next;
                current = down;
                continue;
            }
            let found: TokenTree = input.parse()?;
            return Err(syn::Error::new_spanned(
                &found,
                format!(
                    "expected `=>` or `,` after `{}`, found `{found}`; {USAGE}",
                    previous.to_token_stream().to_string().replace(' ', "")
                ),
            ));
        }
    }
    Ok(model)
}

/// An application's path, with a clear message when something else is there.
fn app_name(input: ParseStream, after: Option<&Token![=>]>) -> syn::Result<syn::Path> {
    if input.is_empty() {
        return Err(match after {
            Some(arrow) => syn::Error::new_spanned(
                arrow,
                "this `=>` leads nowhere: name the application that follows, or remove the `=>`",
            ),
            None => syn::Error::new(Span::call_site(), format!("expected an application; {USAGE}")),
        });
    }
    if input.peek(Token![=>]) {
        let arrow: Token![=>] = input.parse()?;
        return Err(syn::Error::new_spanned(
            arrow,
            "expected an application before this `=>`; each `=>` goes between two applications",
        ));
    }
    if input.peek(Token![,]) {
        let comma: Token![,] = input.parse()?;
        return Err(syn::Error::new_spanned(
            comma,
            "expected an application here; a comma separates one chain from the next",
        ));
    }
    input.call(syn::Path::parse_mod_style).map_err(|error| {
        syn::Error::new(
            error.span(),
            format!("expected the name of a process application (a type with `#[policy]`); {USAGE}"),
        )
    })
}

fn generate(model: &Model) -> TokenStream {
    let private = quote!(::eventsourcing::__private);
    // Every use of an application goes through `<App as Process>::…`, so
    // a name that is not a process application is one error, not one per use.
    let facts: Vec<TokenStream> = model
        .apps
        .iter()
        .map(|app| {
            let path = &app.path;
            quote_spanned! {path.span()=>
                (
                    <#path as #private::Process>::NAME,
                    <#path as #private::Process>::RECORDS,
                    <#path as #private::Process>::HANDLERS,
                    <#path as #private::Process>::__TYPE,
                )
            }
        })
        .collect();
    let follow_checks = model.edges.iter().map(|edge| {
        let (up, down) = (&facts[edge.up], &facts[edge.down]);
        quote_spanned! {edge.arrow=>
            const _: () = if let ::core::option::Option::Some(message) = #private::follow_error(#up, #down) {
                ::core::panic!("{}", message.as_str())
            };
        }
    });
    let edges: Vec<TokenStream> = model
        .edges
        .iter()
        .map(|edge| {
            let (up, down) = (&facts[edge.up], &facts[edge.down]);
            quote!((#up, #down))
        })
        .collect();
    let dead_handler_checks = model.apps.iter().enumerate().map(|(i, app)| {
        quote_spanned! {app.path.span()=>
            const _: () = if let ::core::option::Option::Some(message) =
                #private::dead_handler_error(#i, &[#(#facts),*], &[#(#edges),*])
            {
                ::core::panic!("{}", message.as_str())
            };
        }
    });
    // Each application against those named before it, at its first mention:
    // two types of one name, and two aggregate types of one topic.
    let named: Vec<TokenStream> = model
        .apps
        .iter()
        .map(|app| {
            let (path, key) = (&app.path, &app.key);
            quote_spanned! {path.span()=>
                (#key, <#path as #private::Process>::NAME, <#path as #private::Process>::__TYPE)
            }
        })
        .collect();
    let clash_checks = model.apps.iter().enumerate().skip(1).map(|(i, app)| {
        let (this_named, earlier_named) = (&named[i], &named[..i]);
        quote_spanned! {app.path.span()=>
            const _: () = if let ::core::option::Option::Some(message) =
                #private::name_clash_error(#this_named, &[#(#earlier_named),*])
            {
                ::core::panic!("{}", message.as_str())
            };
        }
    });
    let topic_checks = model.apps.iter().enumerate().map(|(i, app)| {
        let (this, earlier) = (&facts[i], &facts[..i]);
        quote_spanned! {app.path.span()=>
            const _: () = if let ::core::option::Option::Some(message) =
                #private::topic_clash_error(#this, &[#(#earlier),*])
            {
                ::core::panic!("{}", message.as_str())
            };
        }
    });
    let apps = model.apps.iter().map(|app| {
        let path = &app.path;
        quote_spanned!(path.span()=> .__app(<#path as #private::Process>::__system_app()))
    });
    let follows = model.edges.iter().map(|edge| {
        let (up, down) = (&model.apps[edge.up].path, &model.apps[edge.down].path);
        quote!(.__follow(<#up as #private::Process>::NAME, <#down as #private::Process>::NAME))
    });
    quote! {{
        #(#clash_checks)*
        #(#topic_checks)*
        #(#follow_checks)*
        #(#dead_handler_checks)*
        #private::System::new()
            #(#apps)*
            #(#follows)*
    }}
}
