//! The one place bytes become types: bincode 2 (serde), with a hard size limit.
//!
//! Every decoder of network input goes through [`decode`], which refuses input over its
//! limit before reading it, never pre-allocates more than the limit, and refuses trailing
//! bytes, so that one value has exactly one encoding on the wire.

use bincode::config::{Config, standard};
use bincode::error::{DecodeError, EncodeError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes could not be turned into a value, or a value into bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("{size} bytes is over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the input ends early")]
    Truncated,
    #[error("malformed encoding: {0}")]
    Malformed(String),
}

fn config<const LIMIT: usize>() -> impl Config {
    standard().with_limit::<LIMIT>()
}

/// Encodes `value`, refusing a result over `LIMIT` bytes (bincode's limit binds only
/// decoding, so the size is checked here).
pub fn encode<T: Serialize, const LIMIT: usize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, config::<LIMIT>())
        .map_err(|e: EncodeError| CodecError::Malformed(e.to_string()))?;
    if bytes.len() > LIMIT {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit: LIMIT,
        });
    }
    Ok(bytes)
}

/// Decodes exactly one `T` from all of `bytes`, refusing input over `LIMIT` bytes, and
/// input that is not the value's own encoding (bincode's reader takes a varint in a wider
/// form than needed, such as `251, 5, 0` for 5: the same value in other bytes).
pub fn decode<T: DeserializeOwned + Serialize, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<T, CodecError> {
    if bytes.len() > LIMIT {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit: LIMIT,
        });
    }
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config::<LIMIT>()).map_err(|e| match e {
            DecodeError::UnexpectedEnd { .. } => CodecError::Truncated,
            DecodeError::LimitExceeded => CodecError::TooLarge {
                size: bytes.len(),
                limit: LIMIT,
            },
            other => CodecError::Malformed(other.to_string()),
        })?;
    if read != bytes.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes",
            bytes.len() - read
        )));
    }
    let canonical = bincode::serde::encode_to_vec(&value, config::<LIMIT>())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if canonical != bytes {
        return Err(CodecError::Malformed(
            "not the canonical encoding of its value".into(),
        ));
    }
    Ok(value)
}

/// Decodes a `T` from the start of `bytes`, ignoring what follows: for reading a
/// version number before deciding how to read the rest.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    bincode::serde::decode_from_slice(bytes, config::<64>())
        .map(|(value, _)| value)
        .map_err(|e| match e {
            DecodeError::UnexpectedEnd { .. } => CodecError::Truncated,
            other => CodecError::Malformed(other.to_string()),
        })
}

/// A size limit as a type, for generic code whose limit depends on the type it reads
/// ([`crate::envelope::Signable`]): stable Rust takes no `{ T::LIMIT }` as a const argument.
#[derive(Debug)]
pub struct Limit<const BYTES: usize>;

/// [`encode`] and [`decode`] under the limit a type carries.
pub trait SizeLimit {
    /// The limit, in bytes.
    const BYTES: usize;

    /// [`encode`] under this limit.
    fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError>;

    /// [`decode`] under this limit.
    fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, CodecError>;
}

impl<const BYTES: usize> SizeLimit for Limit<BYTES> {
    const BYTES: usize = BYTES;

    fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
        encode::<T, BYTES>(value)
    }

    fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, CodecError> {
        decode::<T, BYTES>(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let value = (7u16, String::from("interlink"), vec![1u32, 2, 3]);
        let bytes = encode::<_, 64>(&value).unwrap();
        assert_eq!(
            decode::<(u16, String, Vec<u32>), 64>(&bytes),
            Ok(value.clone())
        );
        assert!(matches!(
            encode::<_, 8>(&value),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            decode::<(u16, String, Vec<u32>), 8>(&bytes),
            Err(CodecError::TooLarge { .. })
        ));
        assert_eq!(
            decode::<(u16, String, Vec<u32>), 64>(&bytes[..bytes.len() - 1]),
            Err(CodecError::Truncated)
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode::<(u16, String, Vec<u32>), 64>(&longer),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn a_value_has_one_encoding() {
        // 5 as a varint is one byte; bincode's reader also takes the u16 form 251, 5, 0.
        assert_eq!(encode::<_, 16>(&5u64), Ok(vec![5]));
        assert!(matches!(
            decode::<u64, 16>(&[251, 5, 0]),
            Err(CodecError::Malformed(_))
        ));
        assert_eq!(decode::<u64, 16>(&[5]), Ok(5));
        let wide = [251, 0x2c, 0x01];
        assert_eq!(decode::<u64, 16>(&wide), Ok(300));
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate() {
        // A vector claiming 2^62 elements in a few bytes.
        let mut bytes = vec![255u8];
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(decode::<Vec<u64>, 1024>(&bytes).is_err());
    }
}
