//! Short-lived JWT access tokens (HS256) and opaque refresh tokens.

use super::{Actor, Role};
use crate::error::{ServiceError, ServiceResult};
use crate::ids::UserId;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

const ISSUER: &str = "careslot";
const AUDIENCE: &str = "careslot-api";

/// The claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: Uuid,
    /// The role.
    pub role: Role,
    /// Provider id of a PROVIDER user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prv: Option<Uuid>,
    /// Patient id of a PATIENT user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pat: Option<Uuid>,
    /// Locations of a STAFF user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loc: Vec<Uuid>,
    /// Session (refresh-token family) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    /// Issued at (seconds).
    pub iat: i64,
    /// Expires at (seconds).
    pub exp: i64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Token id.
    pub jti: Uuid,
}

impl AccessClaims {
    /// The actor these claims speak for.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: UserId(self.sub),
            role: self.role,
            provider_id: self.prv.map(Into::into),
            patient_id: self.pat.map(Into::into),
            locations: self.loc.iter().copied().map(Into::into).collect(),
            session_id: self.sid,
        }
    }
}

/// Signs and verifies access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// What a token must satisfy, built once (it holds sets; every request checks one).
    validation: Validation,
    /// Tokens whose signature and claims were verified, shared by clones.
    verified: Arc<Mutex<HashMap<Box<str>, AccessClaims>>>,
    access_ttl: Duration,
}

/// Verified tokens kept at most; past it the cache starts over. A client
/// sends the same token for its lifetime (15 minutes by default), so a few
/// thousand cover every active session of an instance.
const MAX_VERIFIED: usize = 4096;

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys from the shared secret (at least 32 bytes).
    pub fn new(secret: &[u8], access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        // Expiry is checked against the injected clock in `verify`, not the system time.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: Arc::default(),
            access_ttl,
        }
    }

    /// How long an access token lives.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Issues an access token for `actor` at `now`; answers it and its expiry.
    pub fn issue(&self, actor: &Actor, now: DateTime<Utc>) -> ServiceResult<(String, DateTime<Utc>)> {
        let expires_at = now + self.access_ttl;
        let claims = AccessClaims {
            sub: actor.user_id.0,
            role: actor.role,
            prv: actor.provider_id.map(|p| p.0),
            pat: actor.patient_id.map(|p| p.0),
            loc: actor.locations.iter().map(|l| l.0).collect(),
            sid: actor.session_id,
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            jti: Uuid::new_v4(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ServiceError::internal)?;
        Ok((token, expires_at))
    }

    /// Verifies signature, issuer, audience and expiry (against `now`, no leeway).
    ///
    /// A token that verified once is remembered by its exact text: the same
    /// bytes carry the same signature and claims, so only the expiry is
    /// checked again (decoding and the HMAC were most of an authenticated
    /// request's cost after the query itself).
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> ServiceResult<AccessClaims> {
        let remembered = self.with_verified(|verified| verified.get(token).cloned());
        let claims = match remembered {
            Some(claims) => claims,
            None => {
                let claims = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
                    .map_err(|_| ServiceError::Unauthenticated("invalid access token"))?
                    .claims;
                self.with_verified(|verified| {
                    if verified.len() >= MAX_VERIFIED {
                        verified.clear();
                    }
                    verified.insert(token.into(), claims.clone());
                });
                claims
            }
        };
        if claims.exp <= now.timestamp() {
            return Err(ServiceError::Unauthenticated("access token expired"));
        }
        Ok(claims)
    }

    fn with_verified<T>(&self, f: impl FnOnce(&mut HashMap<Box<str>, AccessClaims>) -> T) -> T {
        let mut verified = self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut verified)
    }
}

/// A new random refresh token (256 bits, URL-safe).
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("csr_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What is stored of a refresh token: its SHA-256, hex.
pub fn refresh_token_hash(token: &str) -> String {
    crate::phi::hex_digest(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor() -> Actor {
        Actor {
            user_id: UserId::new(),
            role: Role::Staff,
            provider_id: None,
            patient_id: None,
            locations: vec![crate::ids::LocationId::new()].into(),
            session_id: Some(Uuid::new_v4()),
        }
    }

    #[test]
    fn issued_token_verifies_until_expiry() {
        let keys = TokenKeys::new(&[7; 32], Duration::minutes(15));
        let now = Utc::now();
        let staff = actor();
        let (token, exp) = keys.issue(&staff, now).expect("issue");
        assert_eq!(exp, now + Duration::minutes(15));
        let claims = keys.verify(&token, now).expect("verifies");
        assert_eq!(claims.role, Role::Staff);
        assert_eq!(claims.actor(), staff, "locations and session survive the round trip");
        assert!(matches!(
            keys.verify(&token, now + Duration::minutes(16)),
            Err(ServiceError::Unauthenticated("access token expired"))
        ));
    }

    #[test]
    fn tampered_or_foreign_tokens_fail() {
        let keys = TokenKeys::new(&[7; 32], Duration::minutes(15));
        let now = Utc::now();
        let (token, _) = keys.issue(&actor(), now).expect("issue");
        // Verified (and remembered) first: a forgery of it must still fail.
        assert!(keys.verify(&token, now).is_ok());
        let other = TokenKeys::new(&[8; 32], Duration::minutes(15));
        assert!(other.verify(&token, now).is_err());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let claims = URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64");
        let forged = String::from_utf8(claims).expect("utf8").replace("STAFF", "ADMIN");
        parts[1] = URL_SAFE_NO_PAD.encode(forged);
        assert!(keys.verify(&parts.join("."), now).is_err());
        assert!(keys.verify("not a token", now).is_err());
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        assert_ne!(a, new_refresh_token());
        assert_eq!(refresh_token_hash(&a).len(), 64);
        assert_ne!(refresh_token_hash(&a), a);
    }
}
