//! Provider identities: the ed25519 keys behind libp2p peer ids.
//!
//! A provider is named by its ed25519 public key, the same key its libp2p `PeerId` is
//! derived from, so a caller can check that the peer it dials is the one that signed the
//! offer. The secret key never prints and never leaves [`SecretKey`].

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Size of an ed25519 signature on the wire.
pub const SIGNATURE_LEN: usize = 64;

/// A provider's (or caller's) public identity: an ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderId([u8; 32]);

impl ProviderId {
    /// The identity with these public-key bytes (checked when a signature is verified).
    pub fn from_bytes(bytes: [u8; 32]) -> ProviderId {
        ProviderId(bytes)
    }

    /// The 32 bytes of the public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Verifies `signature` over `message` with strict (non-malleable) ed25519 rules.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        key.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderId({self})")
    }
}

/// An ed25519 secret key: the only thing that can sign offers for its [`ProviderId`].
///
/// Cloning keeps the key in memory twice (a call needs it to countersign its receipt);
/// the copies are wiped when dropped.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// The key with this 32-byte seed (the form libp2p keeps for ed25519 keys).
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// The public identity of this key.
    pub fn provider_id(&self) -> ProviderId {
        ProviderId(self.0.verifying_key().to_bytes())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_do_not_print() {
        let key = SecretKey::from_seed(&[7; 32]);
        assert_eq!(format!("{key:?}"), "SecretKey(..)");
    }

    #[test]
    fn a_signature_verifies_only_for_its_key_and_message() {
        let key = SecretKey::from_seed(&[1; 32]);
        let other = SecretKey::from_seed(&[2; 32]);
        let signature = key.sign(b"message");
        assert!(key.provider_id().verify(b"message", &signature));
        assert!(!key.provider_id().verify(b"messagf", &signature));
        assert!(!other.provider_id().verify(b"message", &signature));
    }
}
