//! Typed settings, loaded once at start: defaults, then an optional TOML file
//! (`CARESLOT_CONFIG`), then the environment. Nothing deeper in the code reads
//! the environment.
//!
//! A file uses the same names as the environment, lower-cased and without the
//! `CARESLOT_` prefix (`listen = "0.0.0.0:8080"`, `database_url = "postgres://…"`).

use crate::notifications::{QuietHours, ReminderOffsets};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Development generates missing secrets; production refuses to start without them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Anything but `production`: GraphiQL and introspection on, secrets generated.
    Development,
    /// `CARESLOT_ENV=production`.
    Production,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for ELK/Loki).
    Json,
}

/// A setting that could not be used, named so the operator can fix it.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct SettingsError {
    /// Environment name of the setting, e.g. `CARESLOT_LISTEN`.
    pub setting: String,
    /// What is wrong with it.
    pub message: String,
}

impl SettingsError {
    fn new(setting: &str, message: impl Into<String>) -> Self {
        Self {
            setting: setting.to_owned(),
            message: message.into(),
        }
    }
}

/// Every setting of a Careslot process (api and worker share one shape).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `CARESLOT_ENV`.
    pub mode: Mode,
    /// `CARESLOT_LISTEN`, default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `CARESLOT_DATA_DIR`, default `./data`: SQLite file, generated secrets, outbox.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`; the SQLite file under the data dir when absent.
    pub database_url: String,
    /// `DATABASE_REPLICA_URL`: a PostgreSQL read replica for reads that
    /// tolerate replication lag (slot search, lists); none by default.
    pub database_replica_url: Option<String>,
    /// True when `DATABASE_URL` was not given and the embedded SQLite is used.
    pub database_is_default: bool,
    /// `CARESLOT_DB_MAX_CONNECTIONS`, default 16 (SQLite always uses one writer).
    pub db_max_connections: u32,
    /// `REDIS_URL`; the in-process bus when absent.
    pub redis_url: Option<String>,
    /// `CARESLOT_REDIS_CHANNEL`, default `careslot:events`: the pub/sub channel
    /// of one deployment (instances of one deployment must share it).
    pub redis_channel: String,
    /// `CARESLOT_WS_MAX_CONNECTIONS`, default 20000: open websockets per instance.
    pub ws_max_connections: usize,
    /// `CARESLOT_WS_KEEPALIVE_SECONDS`, default 25: ping interval on idle websockets.
    pub ws_keepalive_seconds: u64,
    /// `CARESLOT_WS_SEND_BUFFER`, default 256: messages queued for one slow
    /// websocket client before the server closes it.
    pub ws_send_buffer: usize,
    /// `CARESLOT_RATE_LIMIT_IP_PER_MINUTE`, default 1200: GraphQL requests per client address.
    pub rate_limit_ip_per_minute: u64,
    /// `CARESLOT_RATE_LIMIT_USER_PER_MINUTE`, default 600: GraphQL requests per signed-in user.
    pub rate_limit_user_per_minute: u64,
    /// `CARESLOT_CORS_ORIGINS`: comma-separated origins allowed to call the API
    /// from a browser; none (same origin only) by default.
    pub cors_origins: Vec<String>,
    /// `CARESLOT_JWT_SECRET`, at least 32 bytes.
    pub jwt_secret: Option<String>,
    /// `CARESLOT_PHI_KEYS`: `keyid:base64,keyid:base64`; the last encrypts.
    pub phi_keys: Option<String>,
    /// `CARESLOT_PHI_INDEX_KEY`: base64 of 32 bytes, keys the blind indexes.
    pub phi_index_key: Option<String>,
    /// `CARESLOT_ACCESS_TOKEN_TTL_SECONDS`, default 900.
    pub access_token_ttl_seconds: i64,
    /// `CARESLOT_REFRESH_TOKEN_TTL_DAYS`, default 30.
    pub refresh_token_ttl_days: i64,
    /// `CARESLOT_BOOTSTRAP_ADMIN_EMAIL`.
    pub bootstrap_admin_email: Option<String>,
    /// `CARESLOT_BOOTSTRAP_ADMIN_PASSWORD`.
    pub bootstrap_admin_password: Option<String>,
    /// `CARESLOT_MIGRATE_ON_START`, default true.
    pub migrate_on_start: bool,
    /// `CARESLOT_LOG_FORMAT`: `json` or `text` (default).
    pub log_format: LogFormat,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: base URL of an OTLP/HTTP receiver (a
    /// collector); spans are exported to `<it>/v1/traces`. None: no exporter.
    pub otel_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`; each binary names itself when absent
    /// (`careslot-api`, `careslot-worker`).
    pub otel_service_name: Option<String>,
    /// `CARESLOT_WORKER_METRICS_LISTEN`, default `127.0.0.1:9091`: where
    /// `careslot-worker` serves `/metrics` and `/healthz`.
    pub worker_metrics_listen: SocketAddr,
    /// `CARESLOT_HOLD_TTL_SECONDS`, default 300.
    pub hold_ttl_seconds: i64,
    /// `CARESLOT_SLOT_CACHE_SECONDS`, default 30: how long slot search keeps
    /// what it read (types, locations, schedules, occupancy) at most; domain
    /// events drop entries sooner. 0 turns the cache off.
    pub slot_cache_seconds: u64,
    /// `CARESLOT_MAX_SLOT_RANGE_DAYS`, default 31.
    pub max_slot_range_days: i64,
    /// `CARESLOT_GRAPHQL_MAX_DEPTH`, default 12.
    pub graphql_max_depth: usize,
    /// `CARESLOT_GRAPHQL_MAX_COMPLEXITY`, default 2000.
    pub graphql_max_complexity: usize,
    /// `CARESLOT_GRAPHQL_MAX_ALIASES`, default 30.
    pub graphql_max_aliases: usize,
    /// `CARESLOT_SMTP_URL`; email is written to `data/outbox/` when absent.
    pub smtp_url: Option<String>,
    /// `TWILIO_ACCOUNT_SID`.
    pub twilio_account_sid: Option<String>,
    /// `TWILIO_AUTH_TOKEN`.
    pub twilio_auth_token: Option<String>,
    /// `TWILIO_FROM_NUMBER`.
    pub twilio_from_number: Option<String>,
    /// `CARESLOT_TWILIO_BASE_URL`, default `https://api.twilio.com`.
    pub twilio_base_url: String,
    /// `CARESLOT_EMAIL_FROM`, default `Careslot <no-reply@careslot.invalid>`.
    pub email_from: String,
    /// `CARESLOT_REMINDER_OFFSETS_MINUTES`, default `1440,120`: reminders this many
    /// minutes before the start (locations and appointment types may override).
    pub reminder_offsets: ReminderOffsets,
    /// `CARESLOT_SMS_QUIET_HOURS`, default `21:00-08:00` in each location's zone;
    /// `off` sends SMS at any hour (locations may override).
    pub sms_quiet_hours: Option<QuietHours>,
    /// `CARESLOT_WORKER_EMBEDDED`: `true`, `false` or `auto` (default: on when the
    /// embedded SQLite is used). Runs the job worker inside `careslot-api`.
    pub worker_embedded: bool,
    /// `CARESLOT_WORKER_POLL_SECONDS`, default 5: how often an idle worker looks for due jobs.
    pub worker_poll_seconds: i64,
    /// `CARESLOT_WORKER_CONCURRENCY`, default 4: jobs one claim takes (a batch).
    pub worker_concurrency: i64,
    /// `CARESLOT_WORKER_BATCHES`, default 2: batches one worker claims and runs
    /// at once (while one waits on its sends or the database, another goes on).
    pub worker_batches: i64,
    /// `CARESLOT_WORKER_LEASE_SECONDS`, default 300: how long a claim lasts before
    /// another worker may take the job over (more than twice the send timeout).
    pub worker_lease_seconds: i64,
    /// `CARESLOT_SEND_TIMEOUT_SECONDS`, default 30: the longest one SMTP or Twilio call may take.
    pub send_timeout_seconds: i64,
    /// `CARESLOT_JOB_MAX_ATTEMPTS`, default 8: attempts before a job is dead-lettered.
    pub job_max_attempts: i64,
    /// `CARESLOT_JOB_BACKOFF_BASE_SECONDS`, default 30: the first retry's delay (doubling, with jitter).
    pub job_backoff_base_seconds: i64,
    /// `CARESLOT_JOB_BACKOFF_MAX_SECONDS`, default 3600: the longest retry delay.
    pub job_backoff_max_seconds: i64,
    /// `CARESLOT_JOB_RETENTION_DAYS`, default 30: finished jobs are pruned after this.
    pub job_retention_days: i64,
    /// `CARESLOT_NOSHOW_GRACE_MINUTES`, default 60: BOOKED becomes NOSHOW this long
    /// after the end when nobody marked an arrival.
    pub noshow_grace_minutes: i64,
    /// `CARESLOT_SWEEP_INTERVAL_SECONDS`, default 60: how often the periodic sweeps run.
    pub sweep_interval_seconds: i64,
    /// Names of the settings that took their default, for the start-up log.
    pub defaulted: Vec<&'static str>,
}

/// (file key, environment name) of every setting.
const KEYS: &[(&str, &str)] = &[
    ("env", "CARESLOT_ENV"),
    ("listen", "CARESLOT_LISTEN"),
    ("data_dir", "CARESLOT_DATA_DIR"),
    ("database_url", "DATABASE_URL"),
    ("database_replica_url", "DATABASE_REPLICA_URL"),
    ("db_max_connections", "CARESLOT_DB_MAX_CONNECTIONS"),
    ("redis_url", "REDIS_URL"),
    ("redis_channel", "CARESLOT_REDIS_CHANNEL"),
    ("ws_max_connections", "CARESLOT_WS_MAX_CONNECTIONS"),
    ("ws_keepalive_seconds", "CARESLOT_WS_KEEPALIVE_SECONDS"),
    ("ws_send_buffer", "CARESLOT_WS_SEND_BUFFER"),
    ("rate_limit_ip_per_minute", "CARESLOT_RATE_LIMIT_IP_PER_MINUTE"),
    ("rate_limit_user_per_minute", "CARESLOT_RATE_LIMIT_USER_PER_MINUTE"),
    ("cors_origins", "CARESLOT_CORS_ORIGINS"),
    ("jwt_secret", "CARESLOT_JWT_SECRET"),
    ("phi_keys", "CARESLOT_PHI_KEYS"),
    ("phi_index_key", "CARESLOT_PHI_INDEX_KEY"),
    ("access_token_ttl_seconds", "CARESLOT_ACCESS_TOKEN_TTL_SECONDS"),
    ("refresh_token_ttl_days", "CARESLOT_REFRESH_TOKEN_TTL_DAYS"),
    ("bootstrap_admin_email", "CARESLOT_BOOTSTRAP_ADMIN_EMAIL"),
    ("bootstrap_admin_password", "CARESLOT_BOOTSTRAP_ADMIN_PASSWORD"),
    ("migrate_on_start", "CARESLOT_MIGRATE_ON_START"),
    ("log_format", "CARESLOT_LOG_FORMAT"),
    ("otel_exporter_otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ("otel_service_name", "OTEL_SERVICE_NAME"),
    ("worker_metrics_listen", "CARESLOT_WORKER_METRICS_LISTEN"),
    ("hold_ttl_seconds", "CARESLOT_HOLD_TTL_SECONDS"),
    ("max_slot_range_days", "CARESLOT_MAX_SLOT_RANGE_DAYS"),
    ("graphql_max_depth", "CARESLOT_GRAPHQL_MAX_DEPTH"),
    ("graphql_max_complexity", "CARESLOT_GRAPHQL_MAX_COMPLEXITY"),
    ("graphql_max_aliases", "CARESLOT_GRAPHQL_MAX_ALIASES"),
    ("slot_cache_seconds", "CARESLOT_SLOT_CACHE_SECONDS"),
    ("smtp_url", "CARESLOT_SMTP_URL"),
    ("twilio_account_sid", "TWILIO_ACCOUNT_SID"),
    ("twilio_auth_token", "TWILIO_AUTH_TOKEN"),
    ("twilio_from_number", "TWILIO_FROM_NUMBER"),
    ("twilio_base_url", "CARESLOT_TWILIO_BASE_URL"),
    ("email_from", "CARESLOT_EMAIL_FROM"),
    ("reminder_offsets_minutes", "CARESLOT_REMINDER_OFFSETS_MINUTES"),
    ("sms_quiet_hours", "CARESLOT_SMS_QUIET_HOURS"),
    ("worker_embedded", "CARESLOT_WORKER_EMBEDDED"),
    ("worker_poll_seconds", "CARESLOT_WORKER_POLL_SECONDS"),
    ("worker_concurrency", "CARESLOT_WORKER_CONCURRENCY"),
    ("worker_batches", "CARESLOT_WORKER_BATCHES"),
    ("worker_lease_seconds", "CARESLOT_WORKER_LEASE_SECONDS"),
    ("send_timeout_seconds", "CARESLOT_SEND_TIMEOUT_SECONDS"),
    ("job_max_attempts", "CARESLOT_JOB_MAX_ATTEMPTS"),
    ("job_backoff_base_seconds", "CARESLOT_JOB_BACKOFF_BASE_SECONDS"),
    ("job_backoff_max_seconds", "CARESLOT_JOB_BACKOFF_MAX_SECONDS"),
    ("job_retention_days", "CARESLOT_JOB_RETENTION_DAYS"),
    ("noshow_grace_minutes", "CARESLOT_NOSHOW_GRACE_MINUTES"),
    ("sweep_interval_seconds", "CARESLOT_SWEEP_INTERVAL_SECONDS"),
];

/// The raw values, environment over file, with the names to report errors by.
struct Raw {
    values: HashMap<&'static str, String>,
    defaulted: Vec<&'static str>,
}

impl Raw {
    fn get(&mut self, env_name: &'static str) -> Option<String> {
        let value = self.values.get(env_name).cloned();
        if value.is_none() {
            self.defaulted.push(env_name);
        }
        value
    }

    fn parse<T: std::str::FromStr>(&mut self, env_name: &'static str, default: T) -> Result<T, SettingsError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(env_name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|e| SettingsError::new(env_name, format!("{text:?}: {e}"))),
        }
    }

    fn positive(&mut self, env_name: &'static str, default: i64) -> Result<i64, SettingsError> {
        let value: i64 = self.parse(env_name, default)?;
        if value <= 0 {
            return Err(SettingsError::new(env_name, "must be a positive number"));
        }
        Ok(value)
    }
}

impl Settings {
    /// Loads settings from the process environment (and `CARESLOT_CONFIG`).
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::load(&std::env::vars().collect())
    }

    /// Loads settings from the given environment map; `CARESLOT_CONFIG` in it names
    /// an optional TOML file whose values the environment overrides.
    pub fn load(env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let mut values: HashMap<&'static str, String> = HashMap::new();
        if let Some(path) = env.get("CARESLOT_CONFIG").filter(|p| !p.is_empty()) {
            for (key, value) in read_file(path)? {
                let Some((_, env_name)) = KEYS.iter().find(|(k, _)| *k == key) else {
                    return Err(SettingsError::new(
                        "CARESLOT_CONFIG",
                        format!("{path}: unknown setting {key:?}"),
                    ));
                };
                values.insert(env_name, value);
            }
        }
        for (_, env_name) in KEYS {
            if let Some(value) = env.get(*env_name).filter(|v| !v.is_empty()) {
                values.insert(env_name, value.clone());
            }
        }
        Self::from_raw(Raw {
            values,
            defaulted: Vec::new(),
        })
    }

    fn from_raw(mut raw: Raw) -> Result<Self, SettingsError> {
        let mode = match raw.get("CARESLOT_ENV").as_deref().map(str::trim) {
            Some("production") => Mode::Production,
            _ => Mode::Development,
        };
        let listen = raw.parse("CARESLOT_LISTEN", SocketAddr::from(([127, 0, 0, 1], 8080)))?;
        let data_dir = PathBuf::from(raw.get("CARESLOT_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let (database_url, database_is_default) = match raw.get("DATABASE_URL") {
            Some(url) => (url, false),
            None => (
                format!("sqlite://{}?mode=rwc", data_dir.join("careslot.db").display()),
                true,
            ),
        };
        if !(database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
            || database_url.starts_with("sqlite:"))
        {
            return Err(SettingsError::new(
                "DATABASE_URL",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }
        let database_replica_url = raw.get("DATABASE_REPLICA_URL").filter(|url| !url.is_empty());
        if let Some(url) = &database_replica_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(SettingsError::new(
                "DATABASE_REPLICA_URL",
                "must start with postgres:// or postgresql:// (a PostgreSQL read replica)",
            ));
        }
        let db_max_connections = raw.positive("CARESLOT_DB_MAX_CONNECTIONS", 16)? as u32;
        let redis_url = raw.get("REDIS_URL");
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(SettingsError::new("REDIS_URL", "must start with redis:// or rediss://"));
        }
        let jwt_secret = raw.get("CARESLOT_JWT_SECRET");
        if let Some(secret) = &jwt_secret
            && secret.len() < 32
        {
            return Err(SettingsError::new("CARESLOT_JWT_SECRET", "must be at least 32 bytes"));
        }
        let phi_keys = raw.get("CARESLOT_PHI_KEYS");
        if let Some(keys) = &phi_keys {
            crate::phi::Keyring::parse_keys(keys).map_err(|e| SettingsError::new("CARESLOT_PHI_KEYS", e))?;
        }
        let phi_index_key = raw.get("CARESLOT_PHI_INDEX_KEY");
        if let Some(key) = &phi_index_key {
            crate::phi::decode_key(key).map_err(|e| SettingsError::new("CARESLOT_PHI_INDEX_KEY", e))?;
        }
        let log_format = match raw.get("CARESLOT_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(SettingsError::new(
                    "CARESLOT_LOG_FORMAT",
                    format!("{other:?}: expected json or text"),
                ));
            }
        };
        let otel_endpoint = raw.get("OTEL_EXPORTER_OTLP_ENDPOINT");
        if let Some(url) = &otel_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(SettingsError::new(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "must start with http:// or https:// (OTLP over HTTP)",
            ));
        }
        let otel_service_name = raw.get("OTEL_SERVICE_NAME").map(|s| s.trim().to_owned());
        let worker_metrics_listen = raw.parse(
            "CARESLOT_WORKER_METRICS_LISTEN",
            SocketAddr::from(([127, 0, 0, 1], 9091)),
        )?;
        let worker = WorkerSettings::read(&mut raw, database_is_default)?;
        let settings = Settings {
            mode,
            listen,
            data_dir,
            database_url,
            database_replica_url,
            database_is_default,
            db_max_connections,
            redis_url,
            redis_channel: raw
                .get("CARESLOT_REDIS_CHANNEL")
                .unwrap_or_else(|| "careslot:events".into()),
            ws_max_connections: raw.positive("CARESLOT_WS_MAX_CONNECTIONS", 20_000)? as usize,
            ws_keepalive_seconds: raw.positive("CARESLOT_WS_KEEPALIVE_SECONDS", 25)? as u64,
            ws_send_buffer: raw.positive("CARESLOT_WS_SEND_BUFFER", 256)? as usize,
            rate_limit_ip_per_minute: raw.positive("CARESLOT_RATE_LIMIT_IP_PER_MINUTE", 1200)? as u64,
            rate_limit_user_per_minute: raw.positive("CARESLOT_RATE_LIMIT_USER_PER_MINUTE", 600)? as u64,
            cors_origins: cors_origins(raw.get("CARESLOT_CORS_ORIGINS"))?,
            jwt_secret,
            phi_keys,
            phi_index_key,
            access_token_ttl_seconds: raw.positive("CARESLOT_ACCESS_TOKEN_TTL_SECONDS", 900)?,
            refresh_token_ttl_days: raw.positive("CARESLOT_REFRESH_TOKEN_TTL_DAYS", 30)?,
            bootstrap_admin_email: raw.get("CARESLOT_BOOTSTRAP_ADMIN_EMAIL"),
            bootstrap_admin_password: raw.get("CARESLOT_BOOTSTRAP_ADMIN_PASSWORD"),
            migrate_on_start: raw.parse("CARESLOT_MIGRATE_ON_START", true)?,
            log_format,
            otel_endpoint,
            otel_service_name,
            worker_metrics_listen,
            hold_ttl_seconds: raw.positive("CARESLOT_HOLD_TTL_SECONDS", 300)?,
            max_slot_range_days: raw.positive("CARESLOT_MAX_SLOT_RANGE_DAYS", 31)?,
            slot_cache_seconds: raw.parse("CARESLOT_SLOT_CACHE_SECONDS", 30u64)?,
            graphql_max_depth: raw.positive("CARESLOT_GRAPHQL_MAX_DEPTH", 12)? as usize,
            graphql_max_complexity: raw.positive("CARESLOT_GRAPHQL_MAX_COMPLEXITY", 2000)? as usize,
            graphql_max_aliases: raw.positive("CARESLOT_GRAPHQL_MAX_ALIASES", 30)? as usize,
            smtp_url: raw.get("CARESLOT_SMTP_URL"),
            twilio_account_sid: raw.get("TWILIO_ACCOUNT_SID"),
            twilio_auth_token: raw.get("TWILIO_AUTH_TOKEN"),
            twilio_from_number: raw.get("TWILIO_FROM_NUMBER"),
            twilio_base_url: raw
                .get("CARESLOT_TWILIO_BASE_URL")
                .unwrap_or_else(|| "https://api.twilio.com".into()),
            email_from: worker.email_from,
            reminder_offsets: worker.reminder_offsets,
            sms_quiet_hours: worker.sms_quiet_hours,
            worker_embedded: worker.embedded,
            worker_poll_seconds: worker.poll_seconds,
            worker_concurrency: worker.concurrency,
            worker_batches: worker.batches,
            worker_lease_seconds: worker.lease_seconds,
            send_timeout_seconds: worker.send_timeout_seconds,
            job_max_attempts: worker.max_attempts,
            job_backoff_base_seconds: worker.backoff_base_seconds,
            job_backoff_max_seconds: worker.backoff_max_seconds,
            job_retention_days: worker.retention_days,
            noshow_grace_minutes: worker.noshow_grace_minutes,
            sweep_interval_seconds: worker.sweep_interval_seconds,
            defaulted: Vec::new(),
        };
        let twilio = [
            settings.twilio_account_sid.is_some(),
            settings.twilio_auth_token.is_some(),
            settings.twilio_from_number.is_some(),
        ];
        if twilio.contains(&true) && twilio.contains(&false) {
            return Err(SettingsError::new(
                "TWILIO_ACCOUNT_SID",
                "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER go together",
            ));
        }
        for (name, url) in [
            ("CARESLOT_TWILIO_BASE_URL", Some(&settings.twilio_base_url)),
            ("CARESLOT_SMTP_URL", settings.smtp_url.as_ref()),
        ] {
            let schemes: &[&str] = if name == "CARESLOT_SMTP_URL" {
                &["smtp://", "smtps://"]
            } else {
                &["http://", "https://"]
            };
            if let Some(url) = url
                && !schemes.iter().any(|s| url.starts_with(s))
            {
                return Err(SettingsError::new(
                    name,
                    format!("must start with {}", schemes.join(" or ")),
                ));
            }
        }
        if settings.bootstrap_admin_email.is_some() != settings.bootstrap_admin_password.is_some() {
            return Err(SettingsError::new(
                "CARESLOT_BOOTSTRAP_ADMIN_PASSWORD",
                "CARESLOT_BOOTSTRAP_ADMIN_EMAIL and _PASSWORD go together",
            ));
        }
        Ok(Settings {
            defaulted: raw.defaulted,
            ..settings
        })
    }

    /// Settings for tests and tools: the defaults, with the given overrides.
    pub fn for_tests(overrides: &[(&str, &str)]) -> Result<Self, SettingsError> {
        let env = overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::load(&env)
    }

    /// True when the database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }
}

/// Parses the CORS allowlist: exact origins (`https://app.clinic.example`).
fn cors_origins(value: Option<String>) -> Result<Vec<String>, SettingsError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && !origin.contains('*');
            if valid {
                Ok(origin.to_owned())
            } else {
                Err(SettingsError::new(
                    "CARESLOT_CORS_ORIGINS",
                    format!("{origin:?} is not an origin like https://app.example.org (no wildcards, no path)"),
                ))
            }
        })
        .collect()
}

fn read_file(path: &str) -> Result<Vec<(String, String)>, SettingsError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| SettingsError::new("CARESLOT_CONFIG", format!("{path}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| SettingsError::new("CARESLOT_CONFIG", format!("{path}: {e}")))?;
    Ok(table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            (key, text)
        })
        .collect())
}

/// The worker's settings, read apart to keep [`Settings::from_raw`] short.
struct WorkerSettings {
    email_from: String,
    reminder_offsets: ReminderOffsets,
    sms_quiet_hours: Option<QuietHours>,
    embedded: bool,
    poll_seconds: i64,
    concurrency: i64,
    batches: i64,
    lease_seconds: i64,
    send_timeout_seconds: i64,
    max_attempts: i64,
    backoff_base_seconds: i64,
    backoff_max_seconds: i64,
    retention_days: i64,
    noshow_grace_minutes: i64,
    sweep_interval_seconds: i64,
}

impl WorkerSettings {
    fn read(raw: &mut Raw, database_is_default: bool) -> Result<Self, SettingsError> {
        let email_from = raw
            .get("CARESLOT_EMAIL_FROM")
            .unwrap_or_else(|| "Careslot <no-reply@careslot.invalid>".into());
        if !email_from.contains('@') || email_from.chars().any(char::is_control) {
            return Err(SettingsError::new(
                "CARESLOT_EMAIL_FROM",
                "must be an address, e.g. Clinic <no-reply@clinic.example>",
            ));
        }
        let reminder_offsets = match raw.get("CARESLOT_REMINDER_OFFSETS_MINUTES") {
            None => ReminderOffsets::default(),
            Some(text) => text
                .parse()
                .map_err(|e| SettingsError::new("CARESLOT_REMINDER_OFFSETS_MINUTES", format!("{text:?}: {e}")))?,
        };
        let sms_quiet_hours = match raw.get("CARESLOT_SMS_QUIET_HOURS") {
            None => Some(QuietHours::default()),
            Some(text) => QuietHours::parse_setting(&text)
                .map_err(|e| SettingsError::new("CARESLOT_SMS_QUIET_HOURS", format!("{text:?}: {e}")))?,
        };
        let embedded = match raw.get("CARESLOT_WORKER_EMBEDDED").as_deref().map(str::trim) {
            None | Some("auto") => database_is_default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(SettingsError::new(
                    "CARESLOT_WORKER_EMBEDDED",
                    format!("{other:?}: expected true, false or auto"),
                ));
            }
        };
        let send_timeout_seconds = raw.positive("CARESLOT_SEND_TIMEOUT_SECONDS", 30)?;
        let lease_seconds = raw.positive("CARESLOT_WORKER_LEASE_SECONDS", 300)?;
        // A claim must outlive the slowest send, or a second worker could take
        // the job over while the first is still talking to the peer.
        if lease_seconds <= 2 * send_timeout_seconds {
            return Err(SettingsError::new(
                "CARESLOT_WORKER_LEASE_SECONDS",
                "must be more than twice CARESLOT_SEND_TIMEOUT_SECONDS",
            ));
        }
        let backoff_base_seconds = raw.positive("CARESLOT_JOB_BACKOFF_BASE_SECONDS", 30)?;
        let backoff_max_seconds = raw.positive("CARESLOT_JOB_BACKOFF_MAX_SECONDS", 3600)?;
        if backoff_max_seconds < backoff_base_seconds {
            return Err(SettingsError::new(
                "CARESLOT_JOB_BACKOFF_MAX_SECONDS",
                "must be at least CARESLOT_JOB_BACKOFF_BASE_SECONDS",
            ));
        }
        let max_attempts = raw.positive("CARESLOT_JOB_MAX_ATTEMPTS", 8)?;
        if max_attempts > 100 {
            return Err(SettingsError::new("CARESLOT_JOB_MAX_ATTEMPTS", "must be at most 100"));
        }
        let concurrency = raw.positive("CARESLOT_WORKER_CONCURRENCY", 4)?;
        if concurrency > 256 {
            return Err(SettingsError::new("CARESLOT_WORKER_CONCURRENCY", "must be at most 256"));
        }
        let batches = raw.positive("CARESLOT_WORKER_BATCHES", 2)?;
        if batches > 16 {
            return Err(SettingsError::new("CARESLOT_WORKER_BATCHES", "must be at most 16"));
        }
        Ok(Self {
            email_from,
            reminder_offsets,
            sms_quiet_hours,
            embedded,
            poll_seconds: raw.positive("CARESLOT_WORKER_POLL_SECONDS", 5)?,
            concurrency,
            batches,
            lease_seconds,
            send_timeout_seconds,
            max_attempts,
            backoff_base_seconds,
            backoff_max_seconds,
            retention_days: raw.positive("CARESLOT_JOB_RETENTION_DAYS", 30)?,
            noshow_grace_minutes: raw.positive("CARESLOT_NOSHOW_GRACE_MINUTES", 60)?,
            sweep_interval_seconds: raw.positive("CARESLOT_SWEEP_INTERVAL_SECONDS", 60)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_configuration() {
        let s = Settings::for_tests(&[]).expect("defaults load");
        assert_eq!(s.mode, Mode::Development);
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert!(s.database_is_default);
        assert!(s.database_url.starts_with("sqlite://"));
        assert!(s.defaulted.contains(&"DATABASE_URL"));
        assert_eq!(s.hold_ttl_seconds, 300);
        assert_eq!(s.reminder_offsets.minutes(), &[1440, 120]);
        assert!(s.worker_embedded, "the embedded default runs the worker in the API");
        assert_eq!(s.sms_quiet_hours.map(|q| q.to_string()).as_deref(), Some("21:00-08:00"));
    }

    #[test]
    fn worker_settings_parse() {
        let s = Settings::for_tests(&[
            ("DATABASE_URL", "postgres://db/careslot"),
            ("CARESLOT_REMINDER_OFFSETS_MINUTES", "2880, 60"),
            ("CARESLOT_SMS_QUIET_HOURS", "off"),
            ("CARESLOT_WORKER_LEASE_SECONDS", "120"),
            ("CARESLOT_SEND_TIMEOUT_SECONDS", "10"),
        ])
        .expect("loads");
        assert!(!s.worker_embedded, "production runs careslot-worker on its own");
        assert_eq!(s.reminder_offsets.minutes(), &[2880, 60]);
        assert!(s.sms_quiet_hours.is_none());
        let forced = Settings::for_tests(&[
            ("DATABASE_URL", "postgres://db/x"),
            ("CARESLOT_WORKER_EMBEDDED", "true"),
        ])
        .expect("loads");
        assert!(forced.worker_embedded);
    }

    #[test]
    fn invalid_values_name_the_setting() {
        for (name, value) in [
            ("CARESLOT_LISTEN", "not-an-address"),
            ("DATABASE_URL", "mysql://x"),
            ("CARESLOT_JWT_SECRET", "short"),
            ("CARESLOT_PHI_KEYS", "k1:not-base64!"),
            ("CARESLOT_LOG_FORMAT", "xml"),
            ("CARESLOT_HOLD_TTL_SECONDS", "-5"),
            ("REDIS_URL", "http://x"),
            ("CARESLOT_WS_MAX_CONNECTIONS", "0"),
            ("CARESLOT_WS_SEND_BUFFER", "lots"),
            ("CARESLOT_CORS_ORIGINS", "*"),
            ("CARESLOT_RATE_LIMIT_USER_PER_MINUTE", "0"),
            ("CARESLOT_REMINDER_OFFSETS_MINUTES", "1440,abc"),
            ("CARESLOT_REMINDER_OFFSETS_MINUTES", "0"),
            ("CARESLOT_REMINDER_OFFSETS_MINUTES", "120,120"),
            ("CARESLOT_SMS_QUIET_HOURS", "21:00"),
            ("CARESLOT_SMS_QUIET_HOURS", "25:00-08:00"),
            ("CARESLOT_SMS_QUIET_HOURS", "08:00-08:00"),
            ("CARESLOT_WORKER_EMBEDDED", "sometimes"),
            ("CARESLOT_WORKER_POLL_SECONDS", "0"),
            ("CARESLOT_WORKER_CONCURRENCY", "1000"),
            ("CARESLOT_WORKER_BATCHES", "0"),
            ("CARESLOT_WORKER_BATCHES", "17"),
            ("CARESLOT_WORKER_LEASE_SECONDS", "60"),
            ("CARESLOT_JOB_MAX_ATTEMPTS", "-1"),
            ("CARESLOT_JOB_BACKOFF_MAX_SECONDS", "10"),
            ("CARESLOT_JOB_RETENTION_DAYS", "x"),
            ("CARESLOT_NOSHOW_GRACE_MINUTES", "0"),
            ("CARESLOT_SWEEP_INTERVAL_SECONDS", "-3"),
            ("CARESLOT_EMAIL_FROM", "nobody"),
            ("CARESLOT_SMTP_URL", "http://mail"),
            ("CARESLOT_TWILIO_BASE_URL", "ftp://twilio"),
            ("TWILIO_ACCOUNT_SID", "AC123"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("CARESLOT_WORKER_METRICS_LISTEN", "9091"),
        ] {
            let err = Settings::for_tests(&[(name, value)]).expect_err(name);
            assert_eq!(err.setting, name, "{err}");
        }
    }

    #[test]
    fn telemetry_settings_parse() {
        let s = Settings::for_tests(&[]).expect("defaults");
        assert_eq!(s.otel_endpoint, None, "no exporter unless asked for");
        assert_eq!(s.worker_metrics_listen.to_string(), "127.0.0.1:9091");
        let s = Settings::for_tests(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SERVICE_NAME", "api-blue"),
            ("CARESLOT_WORKER_METRICS_LISTEN", "0.0.0.0:9100"),
        ])
        .expect("loads");
        assert_eq!(s.otel_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
        assert_eq!(s.otel_service_name.as_deref(), Some("api-blue"));
        assert_eq!(s.worker_metrics_listen.to_string(), "0.0.0.0:9100");
    }

    #[test]
    fn environment_overrides_file() {
        let dir = std::env::temp_dir().join(format!("careslot-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let file = dir.join("careslot.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nhold_ttl_seconds = 60\n").expect("write");
        let path = file.display().to_string();
        let s =
            Settings::for_tests(&[("CARESLOT_CONFIG", &path), ("CARESLOT_LISTEN", "127.0.0.1:9100")]).expect("loads");
        assert_eq!(s.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(s.hold_ttl_seconds, 60);
        std::fs::write(&file, "no_such_setting = 1\n").expect("write");
        let err = Settings::for_tests(&[("CARESLOT_CONFIG", &path)]).expect_err("unknown key");
        assert_eq!(err.setting, "CARESLOT_CONFIG");
        let _ = std::fs::remove_dir_all(dir);
    }
}
