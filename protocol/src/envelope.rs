//! Signed envelopes: how every signed thing of the protocol travels.
//!
//! `signer (32 bytes) ‖ signature (64 bytes) ‖ body`. The signature is ed25519 (verified
//! strictly) over `domain ‖ body`; each kind of signed thing has its own domain, so a
//! signature over an offer means nothing as an invite or a receipt.

use crate::identity::{ProviderId, SIGNATURE_LEN, SecretKey};

/// Bytes before the body.
pub(crate) const HEADER_LEN: usize = 32 + SIGNATURE_LEN;

/// An envelope split into its parts; nothing is verified yet.
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    pub(crate) signer: ProviderId,
    signature: &'a [u8; SIGNATURE_LEN],
    pub(crate) body: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Splits `bytes`, or `None` if they are shorter than the header.
    pub(crate) fn split(bytes: &'a [u8]) -> Option<Envelope<'a>> {
        let (signer, rest) = bytes.split_first_chunk::<32>()?;
        let (signature, body) = rest.split_first_chunk::<SIGNATURE_LEN>()?;
        Some(Envelope {
            signer: ProviderId::from_bytes(*signer),
            signature,
            body,
        })
    }

    /// Whether the signer signed `domain ‖ body`.
    pub(crate) fn verify(&self, domain: &[u8]) -> bool {
        self.signer
            .verify(&signed_message(domain, self.body), self.signature)
    }
}

/// Signs `body` under `domain` with `key` and wraps it in an envelope.
pub(crate) fn seal(domain: &[u8], body: &[u8], key: &SecretKey) -> Vec<u8> {
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
    use super::*;

    #[test]
    fn a_sealed_body_verifies_under_its_domain_only() {
        let key = SecretKey::from_seed(&[3; 32]);
        let bytes = seal(b"domain-a", b"body", &key);
        let envelope = Envelope::split(&bytes).unwrap_or_else(|| panic!("too short"));
        assert_eq!(envelope.signer, key.provider_id());
        assert_eq!(envelope.body, b"body");
        assert!(envelope.verify(b"domain-a"));
        assert!(!envelope.verify(b"domain-b"));
        assert!(Envelope::split(&bytes[..HEADER_LEN - 1]).is_none());
    }
}
