//! The signed envelope: how every signed thing of the protocol travels, and the one place
//! it is opened.
//!
//! `signer (32 bytes) ‖ signature (64 bytes) ‖ body`. The signature is ed25519 (verified
//! strictly) over `domain ‖ body`; each kind of signed thing has its own domain, so a
//! signature over an offer means nothing as an invite or a receipt.
//!
//! A kind of signed thing is a [`Signable`] type: its domain, its size limit, who must
//! sign it and its own checks. [`Signed<T>`] holds such a value with its exact bytes and
//! exists only verified: made with the signer's key ([`Signed::sign`]) or read through
//! every check ([`Signed::open`]): size, encoding, signature, signer, the type's checks.
//! A [`Countersignable`] value can be signed a second time by its other party
//! ([`Countersigned<T>`]): `countersigner ‖ signature ‖ the signed bytes`.
//!
//! Opening fails with an [`Error`] for what every envelope shares, and with the type's
//! own error (which an [`Error`] converts into) for its own checks.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{CodecError, SizeLimit};
use crate::identity::{ProviderId, SIGNATURE_LEN, SecretKey};

/// Bytes before the body: the signer's key and the signature.
pub const HEADER_LEN: usize = 32 + SIGNATURE_LEN;

/// Why bytes are not a signed envelope of the expected kind, or a value cannot be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Over the size limit, shorter than the header, or a body that does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("signed by {signer}, not by {expected}")]
    WrongSigner {
        signer: ProviderId,
        expected: ProviderId,
    },
}

/// A kind of signed thing: how it is encoded, signed and checked.
pub trait Signable: Serialize + DeserializeOwned + Sized {
    /// Prepended to the body before signing.
    const DOMAIN: &'static [u8];
    /// The largest envelope, header included.
    const MAX_BYTES: usize = <Self::BodyLimit as SizeLimit>::BYTES;
    /// The body's codec and its size limit.
    type BodyLimit: SizeLimit;
    /// What a received value is checked against besides its bytes (`now`, say).
    type Context;
    /// The type's error: its own checks, and any envelope [`Error`].
    type Error: From<Error>;

    /// Who must sign the value (the provider, caller, organiser or bridge it names).
    fn signer(&self) -> ProviderId;

    /// Checks the body before it is decoded (a version number, say).
    fn check_body(_body: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Checks the value before it is signed.
    fn check_to_sign(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Checks a received value, once its signature and signer are verified.
    fn check_received(&self, _context: &Self::Context) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A [`Signable`] value its other party signs too, over the first signer's exact bytes.
pub trait Countersignable: Signable {
    /// Prepended to the signed bytes before countersigning.
    const COUNTERSIGN_DOMAIN: &'static [u8];
    /// The largest countersigned envelope.
    const MAX_COUNTERSIGNED_BYTES: usize;

    /// Who must countersign the value.
    fn countersigner(&self) -> ProviderId;
}

/// A verified signed value and its exact wire bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed<T> {
    value: T,
    bytes: Vec<u8>,
}

impl<T: Signable> Signed<T> {
    /// Signs `value` with its signer's key, after the type's checks.
    pub fn sign(value: T, key: &SecretKey) -> Result<Signed<T>, T::Error> {
        check_signer(key.provider_id(), value.signer())?;
        value.check_to_sign()?;
        let body = T::BodyLimit::encode(&value).map_err(Error::from)?;
        let bytes = seal(T::DOMAIN, &body, key);
        Ok(Signed { value, bytes })
    }

    /// Signs without any check: for sealing refused values in tests.
    #[cfg(test)]
    pub(crate) fn sign_unchecked(value: T, key: &SecretKey) -> Result<Signed<T>, T::Error> {
        let body = T::BodyLimit::encode(&value).map_err(Error::from)?;
        let bytes = seal(T::DOMAIN, &body, key);
        Ok(Signed { value, bytes })
    }

    /// Reads and verifies signed bytes received in `context`: size, encoding, signature,
    /// signer and the type's checks, in that order.
    pub fn open(bytes: &[u8], context: &T::Context) -> Result<Signed<T>, T::Error> {
        let parts = Parts::split(bytes, T::MAX_BYTES)?;
        T::check_body(parts.body)?;
        let value: T = T::BodyLimit::decode(parts.body).map_err(Error::from)?;
        parts.verify(T::DOMAIN, value.signer())?;
        value.check_received(context)?;
        Ok(Signed {
            value,
            bytes: bytes.to_vec(),
        })
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Who signed it.
    pub fn signer(&self) -> ProviderId {
        self.value.signer()
    }

    /// The exact bytes to send and store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<T: Countersignable + Clone> Signed<T> {
    /// The other party's countersignature over these exact bytes.
    pub fn countersign(&self, key: &SecretKey) -> Result<Countersigned<T>, T::Error> {
        check_signer(key.provider_id(), self.value.countersigner())?;
        Ok(Countersigned {
            value: self.value.clone(),
            bytes: seal(T::COUNTERSIGN_DOMAIN, &self.bytes, key),
        })
    }
}

/// A verified value signed by its signer and countersigned by its other party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Countersigned<T> {
    value: T,
    bytes: Vec<u8>,
}

impl<T: Countersignable> Countersigned<T> {
    /// Reads and verifies both signatures of countersigned bytes received in `context`.
    pub fn open(bytes: &[u8], context: &T::Context) -> Result<Countersigned<T>, T::Error> {
        let parts = Parts::split(bytes, T::MAX_COUNTERSIGNED_BYTES)?;
        let inner = Signed::<T>::open(parts.body, context)?;
        parts.verify(T::COUNTERSIGN_DOMAIN, inner.value.countersigner())?;
        Ok(Countersigned {
            value: inner.value,
            bytes: bytes.to_vec(),
        })
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The exact bytes both sides store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes the first signer signed, inside.
    pub fn signed_bytes(&self) -> &[u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or_default()
    }
}

fn check_signer(signer: ProviderId, expected: ProviderId) -> Result<(), Error> {
    if signer == expected {
        Ok(())
    } else {
        Err(Error::WrongSigner { signer, expected })
    }
}

/// An envelope split into its parts; nothing is verified yet.
#[derive(Debug)]
struct Parts<'a> {
    signer: ProviderId,
    signature: &'a [u8; SIGNATURE_LEN],
    body: &'a [u8],
}

impl<'a> Parts<'a> {
    /// Splits `bytes` of at most `limit` bytes.
    fn split(bytes: &'a [u8], limit: usize) -> Result<Parts<'a>, Error> {
        if bytes.len() > limit {
            return Err(CodecError::TooLarge {
                size: bytes.len(),
                limit,
            }
            .into());
        }
        let (signer, rest) = bytes
            .split_first_chunk::<32>()
            .ok_or(CodecError::Truncated)?;
        let (signature, body) = rest
            .split_first_chunk::<SIGNATURE_LEN>()
            .ok_or(CodecError::Truncated)?;
        Ok(Parts {
            signer: ProviderId::from_bytes(*signer),
            signature,
            body,
        })
    }

    /// Checks that `expected` signed `domain ‖ body`.
    fn verify(&self, domain: &[u8], expected: ProviderId) -> Result<(), Error> {
        if !self
            .signer
            .verify(&signed_message(domain, self.body), self.signature)
        {
            return Err(Error::BadSignature);
        }
        check_signer(self.signer, expected)
    }
}

/// Signs `body` under `domain` with `key` and wraps it in an envelope.
fn seal(domain: &[u8], body: &[u8], key: &SecretKey) -> Vec<u8> {
    let signature = key.sign(&signed_message(domain, body));
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
    bytes.extend_from_slice(key.provider_id().as_bytes());
    bytes.extend_from_slice(&signature);
    bytes.extend_from_slice(body);
    bytes
}

fn signed_message(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(domain.len() + body.len());
    message.extend_from_slice(domain);
    message.extend_from_slice(body);
    message
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::codec::Limit;

    /// A note signed by its author, countersigned by its reader, and refused when empty.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Note {
        author: ProviderId,
        reader: ProviderId,
        text: String,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum NoteError {
        Envelope(Error),
        Empty,
        Forbidden,
    }

    impl From<Error> for NoteError {
        fn from(e: Error) -> Self {
            NoteError::Envelope(e)
        }
    }

    impl Signable for Note {
        const DOMAIN: &'static [u8] = b"test/note\0";
        type BodyLimit = Limit<256>;
        /// A word the reader refuses.
        type Context = &'static str;
        type Error = NoteError;

        fn signer(&self) -> ProviderId {
            self.author
        }

        fn check_to_sign(&self) -> Result<(), NoteError> {
            if self.text.is_empty() {
                Err(NoteError::Empty)
            } else {
                Ok(())
            }
        }

        fn check_received(&self, forbidden: &&'static str) -> Result<(), NoteError> {
            self.check_to_sign()?;
            if self.text.contains(forbidden) {
                Err(NoteError::Forbidden)
            } else {
                Ok(())
            }
        }
    }

    impl Countersignable for Note {
        const COUNTERSIGN_DOMAIN: &'static [u8] = b"test/note-countersign\0";
        const MAX_COUNTERSIGNED_BYTES: usize = 256 + HEADER_LEN;

        fn countersigner(&self) -> ProviderId {
            self.reader
        }
    }

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    fn note(text: &str) -> Note {
        Note {
            author: key(1).provider_id(),
            reader: key(2).provider_id(),
            text: text.into(),
        }
    }

    #[test]
    fn the_wire_layout_is_signer_signature_body() {
        let signed = Signed::sign(note("hi"), &key(1)).unwrap();
        let bytes = signed.as_bytes();
        assert_eq!(&bytes[..32], key(1).provider_id().as_bytes());
        let body = crate::codec::encode::<_, 256>(&note("hi")).unwrap();
        assert_eq!(&bytes[HEADER_LEN..], &body[..]);
        let signature = key(1).sign(&signed_message(Note::DOMAIN, &body));
        assert_eq!(&bytes[32..HEADER_LEN], &signature[..]);
    }

    #[test]
    fn a_signed_value_opens_under_its_domain_and_checks_only() {
        let signed = Signed::sign(note("hi"), &key(1)).unwrap();
        assert_eq!(Signed::open(signed.as_bytes(), &"bye"), Ok(signed.clone()));
        assert_eq!(signed.signer(), key(1).provider_id());
        assert_eq!(
            Signed::<Note>::open(signed.as_bytes(), &"hi"),
            Err(NoteError::Forbidden)
        );
        let elsewhere = seal(b"test/other\0", &signed.as_bytes()[HEADER_LEN..], &key(1));
        assert_eq!(
            Signed::<Note>::open(&elsewhere, &"bye"),
            Err(NoteError::Envelope(Error::BadSignature))
        );
        assert_eq!(Signed::sign(note(""), &key(1)), Err(NoteError::Empty));
    }

    #[test]
    fn only_the_named_signer_signs() {
        assert_eq!(
            Signed::sign(note("hi"), &key(2)),
            Err(NoteError::Envelope(Error::WrongSigner {
                signer: key(2).provider_id(),
                expected: key(1).provider_id(),
            }))
        );
        let forged = Signed::sign_unchecked(note("hi"), &key(3)).unwrap();
        assert!(matches!(
            Signed::<Note>::open(forged.as_bytes(), &"bye"),
            Err(NoteError::Envelope(Error::WrongSigner { .. }))
        ));
    }

    #[test]
    fn size_and_truncation_are_refused_before_the_signature() {
        let signed = Signed::sign(note("hi"), &key(1)).unwrap();
        let bytes = signed.as_bytes();
        for len in [0, 31, HEADER_LEN - 1, HEADER_LEN, bytes.len() - 1] {
            assert_eq!(
                Signed::<Note>::open(&bytes[..len], &"bye"),
                Err(NoteError::Envelope(Error::Codec(CodecError::Truncated))),
                "{len} bytes"
            );
        }
        assert_eq!(
            Signed::<Note>::open(&[0; 257], &"bye"),
            Err(NoteError::Envelope(Error::Codec(CodecError::TooLarge {
                size: 257,
                limit: 256
            })))
        );
    }

    #[test]
    fn a_countersignature_is_the_readers_over_the_exact_bytes() {
        let signed = Signed::sign(note("hi"), &key(1)).unwrap();
        assert!(matches!(
            signed.countersign(&key(1)),
            Err(NoteError::Envelope(Error::WrongSigner { .. }))
        ));
        let settled = signed.countersign(&key(2)).unwrap();
        assert_eq!(settled.signed_bytes(), signed.as_bytes());
        assert_eq!(&settled.as_bytes()[..32], key(2).provider_id().as_bytes());
        let read = Countersigned::<Note>::open(settled.as_bytes(), &"bye").unwrap();
        assert_eq!(read.value(), signed.value());
        let mut tampered = settled.as_bytes().to_vec();
        tampered[40] ^= 1;
        assert_eq!(
            Countersigned::<Note>::open(&tampered, &"bye"),
            Err(NoteError::Envelope(Error::BadSignature))
        );
        // The inner value's checks hold for the countersigned one too.
        assert_eq!(
            Countersigned::<Note>::open(settled.as_bytes(), &"hi"),
            Err(NoteError::Forbidden)
        );
    }
}
