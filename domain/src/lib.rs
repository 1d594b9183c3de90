//! The rules of the clinic, with no HTTP and no GraphQL in it.
//!
//! Every operation is a method of [`services::Services`] taking a
//! [`services::Caller`]; it checks permission, runs in one transaction with its
//! audit records, and publishes events after commit.

pub mod auth;
pub mod clock;
pub mod db;
pub mod directory;
pub mod error;
pub mod events;
pub mod ids;
pub mod jobs;
pub mod limits;
pub mod notifications;
pub mod pagination;
pub mod phi;
pub mod scheduling;
pub mod secrets;
pub mod services;
pub mod settings;
mod validate;

pub use error::{ServiceError, ServiceResult};
pub use services::{Caller, Policy, Services};

/// Property tests of the input parsers: whatever a client sends, they answer
/// a value or a validation error, and never panic.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn validators_never_panic(text in any::<String>()) {
            let _ = crate::validate::email("f", &text);
            let _ = crate::validate::phone("f", &text);
            let _ = crate::validate::time_zone("f", &text);
            let _ = crate::validate::name("f", &text, 200);
            let _ = crate::validate::name_tokens(&text);
            let _ = crate::phi::Keyring::parse_keys(&text);
            let _ = crate::phi::decode_key(&text);
            let _ = crate::pagination::decode_cursor::<(String, uuid::Uuid)>(Some(&text));
            let _ = crate::events::EventEnvelope::decode(&text);
        }

        #[test]
        fn weekly_rule_times_parse_or_refuse(weekday in -3i32..12, start in any::<String>(), end in "[0-9]{1,3}:[0-9]{1,3}") {
            let rule = crate::scheduling::WeeklyRuleInput { weekday, start_time: start, end_time: end };
            match crate::scheduling::parse_rules_for_tests(&[rule]) {
                Ok(rules) => prop_assert!(rules.iter().all(|(d, s, e)| (1..=7).contains(d) && s < e && *e <= 1440)),
                Err(crate::ServiceError::BadInput { field, .. }) => prop_assert!(field.starts_with("rules.0")),
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }

        #[test]
        fn settings_load_or_name_the_setting(value in any::<String>(), key in 0usize..6) {
            let name = ["CARESLOT_LISTEN", "DATABASE_URL", "CARESLOT_PHI_KEYS", "CARESLOT_HOLD_TTL_SECONDS", "CARESLOT_CORS_ORIGINS", "CARESLOT_LOG_FORMAT"][key];
            if let Err(err) = crate::settings::Settings::for_tests(&[(name, value.as_str())]) {
                prop_assert_eq!(err.setting, name);
            }
        }
    }
}
