//! Whether a process application can be made without its dependencies:
//! `#[policy]` asks, for the runner to fall back on `Default` when it was
//! given no instance of an application.
//!
//! `Process` cannot require `Default` (an application may hold an HTTP
//! client or a configuration), and Rust has no specialization; so the
//! generated code calls a method on `&&DefaultProbe<Self>`, which method
//! resolution finds on `ViaDefault` when `Self: Default` and otherwise,
//! one auto-deref later, on `WithoutDefault`. The type is concrete there
//! (`#[policy]` refuses generic applications), so the choice is made while
//! compiling.

use std::marker::PhantomData;

/// A stand-in for the type `T`, for generated code to ask whether `T`
/// implements `Default`.
#[doc(hidden)]
pub struct DefaultProbe<T>(PhantomData<fn() -> T>);

impl<T> DefaultProbe<T> {
    /// The probe of `T`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

/// Found first: `T::default` for a `T` that implements `Default`.
#[doc(hidden)]
pub trait ViaDefault<T> {
    /// How to make a `T` without its dependencies.
    fn __default_maker(&self) -> Option<fn() -> T>;
}

impl<T: Default> ViaDefault<T> for &DefaultProbe<T> {
    fn __default_maker(&self) -> Option<fn() -> T> {
        Some(T::default)
    }
}

/// Found otherwise: no way to make a `T` without its dependencies.
#[doc(hidden)]
pub trait WithoutDefault<T> {
    /// `None`: `T` does not implement `Default`.
    fn __default_maker(&self) -> Option<fn() -> T>;
}

impl<T> WithoutDefault<T> for DefaultProbe<T> {
    fn __default_maker(&self) -> Option<fn() -> T> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, PartialEq, Debug)]
    struct Plain(u8);

    struct WithClient(#[allow(dead_code)] String);

    #[test]
    // The borrows are what chooses the method.
    #[allow(clippy::needless_borrow)]
    fn the_probe_finds_default_only_where_the_type_implements_it() {
        let plain = (&&DefaultProbe::<Plain>::new()).__default_maker();
        assert_eq!(plain.map(|make| make()), Some(Plain(0)));
        let with_client = (&&DefaultProbe::<WithClient>::new()).__default_maker();
        assert!(with_client.is_none());
    }
}
