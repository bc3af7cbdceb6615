//! The JSON codec that turns event data into stored bytes and back.
//!
//! Event state is stored as bytes so that a later codec (compression,
//! encryption, another format) changes this module and nothing else.

use serde::Serialize;
use serde::de::{DeserializeOwned, Error as _};

/// The codec's error: why a value did not encode or decode.
pub type CodecError = serde_json::Error;

/// A result with the codec's error.
pub type CodecResult<T> = Result<T, CodecError>;

/// Changes stored event state, as JSON (`serde_json::Value`), from one
/// version of its type to the next: the function at index `n - 1` of an
/// event's upcasters takes state written at version `n` to version `n + 1`.
///
/// (Not re-exported here: a public `Value` would make rustc spell `String`
/// as `std::string::String` in every error message that names it.)
pub type Upcaster = fn(&mut serde_json::Value);

/// Encodes event data as JSON bytes.
///
/// ```
/// let bytes = eventsourcing::codec::encode(&("rex", 3))?;
/// assert_eq!(bytes, br#"["rex",3]"#);
/// # Ok::<(), eventsourcing::codec::CodecError>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(value)
}

/// Decodes event data from JSON bytes.
///
/// ```
/// let value: (String, u32) = eventsourcing::codec::decode(br#"["rex",3]"#)?;
/// assert_eq!(value, ("rex".to_string(), 3));
/// # Ok::<(), eventsourcing::codec::CodecError>(())
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(bytes)
}

/// Decodes event data stored at version `stored` as the type's version
/// `current`, upcasting it first through `upcasters[stored - 1..current - 1]`.
/// Data at the current version is decoded directly.
///
/// ```
/// use eventsourcing::codec;
/// use serde_json::Value;
///
/// fn add_currency(state: &mut Value) {
///     state["currency"] = "EUR".into();
/// }
///
/// #[derive(serde::Deserialize)]
/// struct Priced { amount: u32, currency: String }
///
/// let priced: Priced = codec::decode_upcast(br#"{"amount":5}"#, 1, 2, &[add_currency])?;
/// assert_eq!((priced.amount, priced.currency.as_str()), (5, "EUR"));
/// assert!(codec::decode_upcast::<Priced>(br#"{"amount":5}"#, 3, 2, &[add_currency]).is_err());
/// # Ok::<(), eventsourcing::codec::CodecError>(())
/// ```
pub fn decode_upcast<T: DeserializeOwned>(
    bytes: &[u8],
    stored: u32,
    current: u32,
    upcasters: &[Upcaster],
) -> Result<T, CodecError> {
    if stored == current {
        return decode(bytes);
    }
    if stored == 0 || stored > current {
        return Err(CodecError::custom(format!(
            "the state was stored at version {stored}, which this program does not know (its type is at version {current}); \
             run the program that wrote it, or a newer one"
        )));
    }
    let steps = upcasters
        .get(stored as usize - 1..current as usize - 1)
        .ok_or_else(|| {
            CodecError::custom(format!(
                "no upcaster from version {stored} to {current}: the type has {} (one per version after the first)",
                upcasters.len()
            ))
        })?;
    let mut state: serde_json::Value = serde_json::from_slice(bytes)?;
    for upcast in steps {
        upcast(&mut state);
    }
    serde_json::from_value(state)
}
