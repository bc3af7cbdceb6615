//! The JSON codec that turns event data into stored bytes and back.
//!
//! Event state is stored as bytes so that a later codec (compression,
//! encryption, another format) changes this module and nothing else.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The codec's error: why a value did not encode or decode.
pub type CodecError = serde_json::Error;

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
