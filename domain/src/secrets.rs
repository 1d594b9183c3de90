//! The deployment's secrets: from settings, or (in development only) generated
//! once and kept under the data dir so restarts keep sessions and can read PHI.

use crate::auth::TokenKeys;
use crate::phi::{Keyring, decode_key};
use crate::settings::{Mode, Settings, SettingsError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use std::path::Path;

/// Secrets ready for use.
#[derive(Clone, Debug)]
pub struct Secrets {
    /// Access-token signing keys.
    pub tokens: TokenKeys,
    /// PHI encryption keys and the blind-index key.
    pub keyring: Keyring,
    /// What was generated or read from the data dir, for the start-up log.
    pub notes: Vec<String>,
}

impl Secrets {
    /// Resolves the secrets: configured values win; in production a missing one is
    /// an error naming it; in development it is generated once under the data dir.
    pub fn resolve(settings: &Settings) -> Result<Self, SettingsError> {
        let mut notes = Vec::new();
        let jwt = secret(
            settings,
            "CARESLOT_JWT_SECRET",
            &settings.jwt_secret,
            "jwt_secret",
            &mut notes,
            || random_b64(48),
        )?;
        let phi = secret(
            settings,
            "CARESLOT_PHI_KEYS",
            &settings.phi_keys,
            "phi_keys",
            &mut notes,
            || format!("dev1:{}", random_b64(32)),
        )?;
        let index = secret(
            settings,
            "CARESLOT_PHI_INDEX_KEY",
            &settings.phi_index_key,
            "phi_index_key",
            &mut notes,
            || random_b64(32),
        )?;
        let bad = |name: &str, message: String| SettingsError {
            setting: name.to_owned(),
            message,
        };
        let keys = Keyring::parse_keys(&phi).map_err(|e| bad("CARESLOT_PHI_KEYS", e))?;
        let index_key = decode_key(&index).map_err(|e| bad("CARESLOT_PHI_INDEX_KEY", e))?;
        let keyring = Keyring::new(&keys, index_key).map_err(|e| bad("CARESLOT_PHI_KEYS", e.to_string()))?;
        if jwt.len() < 32 {
            return Err(bad("CARESLOT_JWT_SECRET", "must be at least 32 bytes".into()));
        }
        let tokens = TokenKeys::new(
            jwt.as_bytes(),
            chrono::Duration::seconds(settings.access_token_ttl_seconds),
        );
        Ok(Self { tokens, keyring, notes })
    }
}

fn secret(
    settings: &Settings,
    name: &str,
    configured: &Option<String>,
    file_name: &str,
    notes: &mut Vec<String>,
    generate: impl FnOnce() -> String,
) -> Result<String, SettingsError> {
    if let Some(value) = configured {
        return Ok(value.clone());
    }
    if settings.mode == Mode::Production {
        return Err(SettingsError {
            setting: name.to_owned(),
            message: "required in production (CARESLOT_ENV=production)".into(),
        });
    }
    let path = settings.data_dir.join("secrets").join(file_name);
    read_or_create(&path, generate)
        .map(|(value, created)| {
            let verb = if created { "generated" } else { "read" };
            notes.push(format!(
                "{name} not set: {verb} development value at {}",
                path.display()
            ));
            value
        })
        .map_err(|e| SettingsError {
            setting: name.to_owned(),
            message: format!("cannot keep a development value at {}: {e}", path.display()),
        })
}

fn read_or_create(path: &Path, generate: impl FnOnce() -> String) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text.trim().to_owned(), false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let value = generate();
            write_private(path, &value)?;
            Ok((value, true))
        }
        Err(e) => Err(e),
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(value.as_bytes())?;
    file.write_all(b"\n")
}

fn random_b64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_generates_once_and_production_refuses() {
        let dir = std::env::temp_dir().join(format!("careslot-secrets-{}", uuid::Uuid::new_v4()));
        let dir_text = dir.display().to_string();
        let dev = Settings::for_tests(&[("CARESLOT_DATA_DIR", &dir_text)]).expect("settings");
        let first = Secrets::resolve(&dev).expect("generated");
        assert_eq!(first.notes.len(), 3);
        assert!(first.notes[0].contains("generated"));
        let second = Secrets::resolve(&dev).expect("read back");
        assert!(second.notes[0].contains("read"));
        assert_eq!(
            first.keyring.blind_index("email", "a@b.c"),
            second.keyring.blind_index("email", "a@b.c")
        );

        let prod =
            Settings::for_tests(&[("CARESLOT_DATA_DIR", &dir_text), ("CARESLOT_ENV", "production")]).expect("settings");
        let err = Secrets::resolve(&prod).expect_err("production needs secrets");
        assert_eq!(err.setting, "CARESLOT_JWT_SECRET");
        let _ = std::fs::remove_dir_all(dir);
    }
}
