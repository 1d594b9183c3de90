//! Password hashing (Argon2id) and the policy for new passwords.

use crate::error::{ServiceError, ServiceResult};
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;

/// The Argon2 variant and version of every hash (and of the dummy).
const ALGORITHM: Algorithm = Algorithm::Argon2id;
const VERSION: Version = Version::V0x13;

/// Hashes and verifies passwords off the async runtime (Argon2 is deliberately slow).
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    params: Params,
    /// A hash of a random password, verified against when the email is unknown so
    /// that an unknown email and a wrong password take the same time.
    dummy_hash: Arc<String>,
}

impl PasswordHasher {
    /// OWASP's recommended Argon2id parameters (19 MiB, 2 passes).
    pub fn new() -> ServiceResult<Self> {
        Self::with_params(Params::new(19 * 1024, 2, 1, None).map_err(anyhow_err)?)
    }

    /// Cheap parameters, for tests only: hashing costs little there.
    pub fn fast_for_tests() -> ServiceResult<Self> {
        Self::with_params(Params::new(256, 1, 1, None).map_err(anyhow_err)?)
    }

    fn with_params(params: Params) -> ServiceResult<Self> {
        Ok(Self {
            dummy_hash: Arc::new(dummy_hash(&params)?),
            params,
        })
    }

    /// Hashes `password` into a PHC string.
    pub async fn hash(&self, password: &str) -> ServiceResult<String> {
        let params = self.params.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_with(&params, &password))
            .await
            .map_err(ServiceError::internal)?
    }

    /// True when `password` matches `hash`; with `None` it verifies against a dummy
    /// hash and answers false, taking the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> ServiceResult<bool> {
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.dummy_hash.as_str().to_owned(), str::to_owned);
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(anyhow_err)?;
            Ok::<_, ServiceError>(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(ServiceError::internal)??;
        Ok(known && ok)
    }
}

/// A hash in PHC form with `params`, a random salt and random output: what
/// no password produces, and costs a verification exactly what a real hash
/// with `params` costs (verifying recomputes the hash from the parameters in
/// the string). Not computed by hashing: that took 19 MiB and tens of
/// milliseconds at every start, and an allocator that keeps freed memory for
/// reuse then showed it as idle RSS.
fn dummy_hash(params: &Params) -> ServiceResult<String> {
    use argon2::password_hash::phc::{Output, ParamsString, Salt};
    use rand::RngCore as _;
    let mut salt = [0u8; 16];
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    rand::rng().fill_bytes(&mut salt);
    rand::rng().fill_bytes(&mut output);
    let hash = PasswordHash {
        algorithm: ALGORITHM.ident(),
        version: Some(VERSION.into()),
        params: ParamsString::try_from(params).map_err(anyhow_err)?,
        salt: Some(Salt::new(&salt).map_err(anyhow_err)?),
        hash: Some(Output::new(&output).map_err(anyhow_err)?),
    };
    Ok(hash.to_string())
}

fn hash_with(params: &Params, password: &str) -> ServiceResult<String> {
    let argon = Argon2::new(ALGORITHM, VERSION, params.clone());
    argon
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(anyhow_err)
}

fn anyhow_err(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::internal(anyhow::anyhow!("argon2: {e}"))
}

/// The policy for a new password: 12 to 128 characters, not all one character,
/// not a well-known weak password.
pub fn validate_new_password(field: &str, password: &str) -> ServiceResult<()> {
    const WEAK: &[&str] = &[
        "password", "123456", "qwerty", "letmein", "welcome", "admin", "careslot", "iloveyou",
    ];
    let count = password.chars().count();
    if count < 12 {
        return Err(ServiceError::bad_input(
            field,
            "password must be at least 12 characters",
        ));
    }
    if count > 128 {
        return Err(ServiceError::bad_input(
            field,
            "password must be at most 128 characters",
        ));
    }
    let lower = password.to_lowercase();
    let first = lower.chars().next();
    if lower.chars().all(|c| Some(c) == first)
        || WEAK.iter().any(|w| lower.starts_with(w) && lower.len() < w.len() + 6)
        || is_breached(&lower)
    {
        return Err(ServiceError::bad_input(field, "password is too easy to guess"));
    }
    Ok(())
}

/// True when `lower` (a lowercased password) is a common breached password,
/// or one with digits or symbols added around it ("baseball2024!").
fn is_breached(lower: &str) -> bool {
    static LIST: std::sync::OnceLock<std::collections::HashSet<&'static str>> = std::sync::OnceLock::new();
    let list = LIST.get_or_init(|| {
        include_str!("common_passwords.txt")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .collect()
    });
    let decoration = |c: char| c.is_ascii_digit() || c.is_ascii_punctuation() || c == ' ';
    let core = lower.trim_matches(decoration);
    list.contains(lower) || (core.chars().count() >= 8 && list.contains(core))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verifies_and_rejects() {
        let hasher = PasswordHasher::fast_for_tests().expect("hasher");
        let hash = hasher.hash("correct horse battery").await.expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify("correct horse battery", Some(&hash))
                .await
                .expect("verify")
        );
        assert!(!hasher.verify("wrong horse battery", Some(&hash)).await.expect("verify"));
        assert!(!hasher.verify("correct horse battery", None).await.expect("verify"));
    }

    /// The unknown-email path verifies against the dummy: it must parse and
    /// carry the hasher's own parameters, or that path would cost less (or
    /// fail) and tell an unknown email from a wrong password.
    #[test]
    fn the_dummy_hash_has_the_real_parameters() {
        let params = Params::new(19 * 1024, 2, 1, None).expect("params");
        let dummy = dummy_hash(&params).expect("dummy");
        let parsed = PasswordHash::new(&dummy).expect("a PHC string");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let carried = Params::try_from(&parsed).expect("argon2 parameters");
        let costs = |p: &Params| (p.m_cost(), p.t_cost(), p.p_cost());
        assert_eq!(costs(&carried), costs(&params));
        assert_eq!(parsed.hash.map(|h| h.len()), Some(Params::DEFAULT_OUTPUT_LEN));
        assert_eq!(parsed.version, Some(u32::from(VERSION)));
        assert_ne!(dummy, dummy_hash(&params).expect("dummy"), "salt and output are random");
        let verified = Argon2::default().verify_password(b"any password", &parsed);
        assert!(verified.is_err(), "no password matches it");
    }

    #[test]
    fn policy() {
        assert!(validate_new_password("p", "short").is_err());
        assert!(validate_new_password("p", "aaaaaaaaaaaaaaa").is_err());
        assert!(validate_new_password("p", "password1234").is_err());
        assert!(validate_new_password("p", &"x1".repeat(70)).is_err());
        assert!(validate_new_password("p", "correct horse battery").is_ok());
    }

    #[test]
    fn breached_passwords_and_decorated_ones_are_refused() {
        for weak in [
            "qwertyuiop123",
            "1qaz2wsx3edc",
            "Baseball2024!",
            "!!sunshine1234",
            "QAZWSXEDCRFV",
        ] {
            assert!(
                validate_new_password("p", weak).is_err(),
                "{weak} is in the breach list"
            );
        }
        for fine in ["baseball moon river", "tulip-quartz-9931", "correct horse battery"] {
            assert!(validate_new_password("p", fine).is_ok(), "{fine} is not");
        }
    }
}
