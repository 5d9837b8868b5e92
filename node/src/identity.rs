//! The node's identity: one ed25519 key for libp2p and for signing offers.
//!
//! The key lives in `identity.key` in the data directory, in libp2p's protobuf key format,
//! readable by its owner only (mode 0600). The same key gives the node's `PeerId` and the
//! [`ProviderId`] in its offers, so a caller can check that the peer it dials signed the
//! offer it accepted.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use interlink_protocol::{ProviderId, SecretKey};
use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey, ed25519};

/// The key file's name in the data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Why the identity could not be created or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("{0} already exists; refusing to overwrite an identity key")]
    AlreadyExists(PathBuf),
    #[error("no identity key at {0}; run `interlink init` first")]
    Missing(PathBuf),
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a libp2p ed25519 key: {source}")]
    Invalid {
        path: PathBuf,
        source: libp2p::identity::DecodingError,
    },
    #[error("{0} is not a libp2p ed25519 key: not an ed25519 key")]
    NotEd25519(PathBuf),
}

/// Creates a new key in `dir`, readable by its owner only. Never overwrites a key.
pub fn create(dir: &Path) -> Result<Keypair, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let keypair = Keypair::generate_ed25519();
    let encoded = keypair
        .to_protobuf_encoding()
        .map_err(|source| IdentityError::Invalid {
            path: path.clone(),
            source,
        })?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => IdentityError::AlreadyExists(path.clone()),
            _ => io(e),
        })?;
    file.write_all(&encoded)
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    Ok(keypair)
}

/// Reads the key in `dir`, warning if others can read it.
pub fn load(dir: &Path) -> Result<Keypair, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => IdentityError::Missing(path.clone()),
        _ => IdentityError::Io {
            path: path.clone(),
            source: e,
        },
    })?;
    if let Ok(meta) = std::fs::metadata(&path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "identity key is readable by others; chmod 600 it");
    }
    let keypair =
        Keypair::from_protobuf_encoding(&bytes).map_err(|source| IdentityError::Invalid {
            path: path.clone(),
            source,
        })?;
    if keypair.clone().try_into_ed25519().is_err() {
        return Err(IdentityError::NotEd25519(path));
    }
    Ok(keypair)
}

/// The offer-signing key of an ed25519 keypair, or `None` for another key type.
pub fn secret_key(keypair: &Keypair) -> Option<SecretKey> {
    let ed25519 = keypair.clone().try_into_ed25519().ok()?;
    let seed: [u8; 32] = ed25519.secret().as_ref().try_into().ok()?;
    Some(SecretKey::from_seed(&seed))
}

/// The libp2p peer id of a provider.
pub fn peer_id(provider: &ProviderId) -> Option<PeerId> {
    let key = ed25519::PublicKey::try_from_bytes(provider.as_bytes()).ok()?;
    Some(PublicKey::from(key).to_peer_id())
}

/// The provider behind a peer id, if the peer id inlines an ed25519 key (as all do).
pub fn provider_id(peer: &PeerId) -> Option<ProviderId> {
    let multihash = peer.as_ref();
    // Peer ids of keys up to 42 bytes use the identity multihash (code 0): the key itself.
    if multihash.code() != 0 {
        return None;
    }
    let key = PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    Some(ProviderId::from_bytes(
        key.try_into_ed25519().ok()?.to_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_gives_the_same_owner_only_key() {
        let dir = tempfile::tempdir().unwrap();
        let created = create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
            .map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let loaded = load(dir.path()).unwrap();
        assert_eq!(created.public(), loaded.public());
        assert!(matches!(
            create(dir.path()),
            Err(IdentityError::AlreadyExists(_))
        ));
    }

    #[test]
    fn the_peer_id_and_the_provider_id_name_the_same_key() {
        let keypair = Keypair::generate_ed25519();
        let provider = secret_key(&keypair)
            .map(|k| k.provider_id())
            .unwrap_or_else(|| panic!("ed25519"));
        let peer = keypair.public().to_peer_id();
        assert_eq!(peer_id(&provider), Some(peer));
        assert_eq!(provider_id(&peer), Some(provider));
    }

    #[test]
    fn a_missing_or_garbled_key_says_so() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path()), Err(IdentityError::Missing(_))));
        std::fs::write(dir.path().join(IDENTITY_FILE), b"garbage").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(IdentityError::Invalid { .. })
        ));
    }

    #[test]
    fn a_garbled_key_keeps_why_it_could_not_be_decoded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), b"garbage").unwrap();
        let error = load(dir.path()).unwrap_err();
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert!(source.is_some_and(|why| error.to_string().ends_with(&why)));
    }
}
