//! AES-256-GCM field encryption with key ids, and keyed-hash blind indexes.
//!
//! A ciphertext is `0x01 || nonce(12) || ciphertext+tag`; the id of the key that
//! made it is stored beside it (`phi_key_id`), so keys can rotate: the newest key
//! encrypts, every configured key decrypts. The associated data binds each
//! ciphertext to its table, field and row, so a value copied into another row or
//! column fails to decrypt instead of showing the wrong patient's data.

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why a key or a ciphertext could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// A key in the configuration is malformed.
    #[error("{0}")]
    BadKey(String),
    /// The ciphertext names a key that is not configured.
    #[error("unknown PHI key id {0:?}")]
    UnknownKey(String),
    /// The ciphertext is malformed or was tampered with.
    #[error("PHI ciphertext failed authentication")]
    Corrupt,
}

/// Decodes a base64 key of exactly 32 bytes.
pub fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = B64.decode(text.trim()).map_err(|e| format!("not base64: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("key must be 32 bytes, got {}", b.len()))
}

/// The PHI keys of a deployment.
#[derive(Clone)]
pub struct Keyring {
    ciphers: Arc<HashMap<String, Aes256Gcm>>,
    current: String,
    index_key: Arc<[u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.ciphers.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Parses `keyid:base64,keyid:base64` into (id, key) pairs, in order.
    pub fn parse_keys(text: &str) -> Result<Vec<(String, [u8; 32])>, String> {
        let mut keys = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, key) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?} is not keyid:base64"))?;
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(format!("key id {id:?} must be letters, digits, - or _"));
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(format!("key id {id:?} appears twice"));
            }
            keys.push((id.to_owned(), decode_key(key).map_err(|e| format!("key {id:?}: {e}"))?));
        }
        if keys.is_empty() {
            return Err("no keys given".into());
        }
        Ok(keys)
    }

    /// A keyring from the configured encryption keys (the last one encrypts) and
    /// the blind-index key.
    pub fn new(keys: &[(String, [u8; 32])], index_key: [u8; 32]) -> Result<Self, KeyringError> {
        let current = keys
            .last()
            .map(|(id, _)| id.clone())
            .ok_or_else(|| KeyringError::BadKey("no PHI keys".into()))?;
        let ciphers = keys
            .iter()
            .map(|(id, key)| {
                Aes256Gcm::new_from_slice(key)
                    .map(|c| (id.clone(), c))
                    .map_err(|_| KeyringError::BadKey(format!("key {id:?} has the wrong length")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            ciphers: Arc::new(ciphers),
            current,
            index_key: Arc::new(index_key),
        })
    }

    /// Id of the key that encrypts new writes.
    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Encrypts `plaintext` for `field` of row `row` with the current key.
    pub fn encrypt(&self, field: &str, row: Uuid, plaintext: &str) -> Result<Vec<u8>, KeyringError> {
        let cipher = self
            .ciphers
            .get(&self.current)
            .ok_or_else(|| KeyringError::UnknownKey(self.current.clone()))?;
        let nonce = Nonce::generate();
        let aad = associated_data(field, row);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| KeyringError::Corrupt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a value written by [`Keyring::encrypt`] with key `key_id`.
    pub fn decrypt(&self, key_id: &str, field: &str, row: Uuid, data: &[u8]) -> Result<String, KeyringError> {
        let cipher = self
            .ciphers
            .get(key_id)
            .ok_or_else(|| KeyringError::UnknownKey(key_id.to_owned()))?;
        if data.len() < 1 + NONCE_LEN || data[0] != FORMAT_V1 {
            return Err(KeyringError::Corrupt);
        }
        let nonce = Nonce::try_from(&data[1..1 + NONCE_LEN]).map_err(|_| KeyringError::Corrupt)?;
        let aad = associated_data(field, row);
        let plain = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &data[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| KeyringError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| KeyringError::Corrupt)
    }

    /// Keyed hash (HMAC-SHA-256, hex) of a normalized value, for equality lookups
    /// without decryption. `purpose` separates the index spaces (email, phone, name).
    pub fn blind_index(&self, purpose: &str, normalized: &str) -> String {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.index_key.as_slice())
            .expect("HMAC takes keys of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(normalized.as_bytes());
        hex_digest(&mac.finalize().into_bytes())
    }
}

fn associated_data(field: &str, row: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(field.len() + 17);
    aad.extend_from_slice(field.as_bytes());
    aad.push(0);
    aad.extend_from_slice(row.as_bytes());
    aad
}

/// Lower-case hex of bytes.
pub(crate) fn hex_digest(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[(&str, u8)]) -> Keyring {
        let keys: Vec<_> = keys.iter().map(|(id, b)| ((*id).to_owned(), [*b; 32])).collect();
        Keyring::new(&keys, [9; 32]).expect("keyring")
    }

    #[test]
    fn round_trip_and_rotation() {
        let old = ring(&[("k1", 1)]);
        let row = Uuid::new_v4();
        let sealed = old.encrypt("patients.name", row, "Ada Lovelace").expect("encrypt");
        assert!(!sealed.windows(3).any(|w| w == b"Ada"), "no plaintext in ciphertext");
        let rotated = ring(&[("k1", 1), ("k2", 2)]);
        assert_eq!(rotated.current_key_id(), "k2");
        assert_eq!(
            rotated
                .decrypt("k1", "patients.name", row, &sealed)
                .expect("old key decrypts"),
            "Ada Lovelace"
        );
        let resealed = rotated.encrypt("patients.name", row, "Ada Lovelace").expect("encrypt");
        assert!(matches!(
            old.decrypt("k2", "patients.name", row, &resealed),
            Err(KeyringError::UnknownKey(_))
        ));
    }

    #[test]
    fn ciphertext_is_bound_to_row_and_field() {
        let ring = ring(&[("k1", 1)]);
        let row = Uuid::new_v4();
        let sealed = ring.encrypt("patients.name", row, "Ada").expect("encrypt");
        assert!(matches!(
            ring.decrypt("k1", "patients.name", Uuid::new_v4(), &sealed),
            Err(KeyringError::Corrupt)
        ));
        assert!(matches!(
            ring.decrypt("k1", "patients.email", row, &sealed),
            Err(KeyringError::Corrupt)
        ));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            ring.decrypt("k1", "patients.name", row, &tampered),
            Err(KeyringError::Corrupt)
        ));
    }

    #[test]
    fn blind_index_is_keyed_and_separated_by_purpose() {
        let a = ring(&[("k1", 1)]);
        assert_eq!(a.blind_index("email", "x@y.z"), a.blind_index("email", "x@y.z"));
        assert_ne!(a.blind_index("email", "x@y.z"), a.blind_index("phone", "x@y.z"));
        let other = Keyring::new(&[("k1".into(), [1; 32])], [8; 32]).expect("keyring");
        assert_ne!(a.blind_index("email", "x@y.z"), other.blind_index("email", "x@y.z"));
    }

    #[test]
    fn key_parsing_rejects_bad_input() {
        let good = B64.encode([7u8; 32]);
        assert_eq!(
            Keyring::parse_keys(&format!("a:{good}, b:{good}"))
                .expect("parses")
                .len(),
            2
        );
        for bad in [
            "",
            "nocolon",
            "a:!!",
            &format!("a:{}", B64.encode([1u8; 16])),
            &format!("a:{good},a:{good}"),
        ] {
            assert!(Keyring::parse_keys(bad).is_err(), "{bad:?}");
        }
    }
}
