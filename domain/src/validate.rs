//! Validation of user input shared by several services. Each check names the
//! argument path it reports on.

use crate::error::{ServiceError, ServiceResult};

/// A trimmed, non-empty name of at most `max` characters.
pub fn name(field: &str, value: &str, max: usize) -> ServiceResult<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::bad_input(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(ServiceError::bad_input(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ServiceError::bad_input(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// A normalized (trimmed, lower-cased) email address.
pub fn email(field: &str, value: &str) -> ServiceResult<String> {
    let normalized = value.trim().to_lowercase();
    let valid = normalized.len() <= 254
        && !normalized.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(normalized.split_once('@'), Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
                && !domain.ends_with('.') && !domain.contains('@'));
    if valid {
        Ok(normalized)
    } else {
        Err(ServiceError::bad_input(field, "not a valid email address"))
    }
}

/// A phone number normalized to E.164 (`+` and 8 to 15 digits); spaces, dots,
/// dashes and parentheses are dropped.
pub fn phone(field: &str, value: &str) -> ServiceResult<String> {
    let compact: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0') {
        Ok(compact)
    } else {
        Err(ServiceError::bad_input(
            field,
            "phone must be in international form, e.g. +15551234567",
        ))
    }
}

/// An IANA time zone name.
pub fn time_zone(field: &str, value: &str) -> ServiceResult<chrono_tz::Tz> {
    value
        .trim()
        .parse::<chrono_tz::Tz>()
        .map_err(|_| ServiceError::bad_input(field, format!("{:?} is not an IANA time zone", value.trim())))
}

/// The lower-cased words of a name, for the search index.
pub fn name_tokens(value: &str) -> Vec<String> {
    let mut tokens: Vec<String> = value
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect();
    tokens.sort();
    tokens.dedup();
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email("e", "  Ada@Example.ORG ").expect("ok"), "ada@example.org");
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.org",
            "ada@x",
            "a da@x.org",
            "a@b@c.org",
            "a@.org",
        ] {
            assert!(email("e", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn phones() {
        assert_eq!(phone("p", "+1 (555) 123-4567").expect("ok"), "+15551234567");
        for bad in ["5551234567", "+1", "+1555abc4567", "+0123456789", "+1234567890123456"] {
            assert!(phone("p", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zones_and_names() {
        assert!(time_zone("tz", "America/New_York").is_ok());
        assert!(time_zone("tz", "Mars/Olympus").is_err());
        assert!(name("n", "   ", 10).is_err());
        assert!(name("n", "abcdefghijk", 10).is_err());
        assert_eq!(name("n", " Ada ", 10).expect("ok"), "Ada");
        assert_eq!(name_tokens("Ada  Lovelace-Byron ada"), vec!["ada", "byron", "lovelace"]);
    }
}
