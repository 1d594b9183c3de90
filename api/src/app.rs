//! Builds the application from settings: secrets, database, bus, services, schema.

use crate::ws::WsLimits;
use anyhow::Context as _;
use domain::auth::PasswordHasher;
use domain::clock::{SharedClock, SystemClock};
use domain::events::{MemoryBus, RedisBus, SharedBus};
use domain::limits::RedisCounters;
use domain::secrets::Secrets;
use domain::settings::{Mode, Settings};
use domain::{Policy, Services, db};
use schema::{CareslotSchema, SchemaOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How far a subscriber may fall behind the bus before it skips events.
const BUS_CAPACITY: usize = 4096;

/// Choices tests make differently from production.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// The clock; the system clock in production.
    pub clock: SharedClock,
    /// Cheap password hashing (tests only).
    pub fast_password_hashing: bool,
    /// Counts every SQL statement the app runs (tests that assert batching).
    pub statement_counter: Option<Arc<AtomicU64>>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            fast_password_hashing: false,
            statement_counter: None,
        }
    }
}

/// Everything a running API instance holds, behind one shared handle: the
/// router clones its state for every request, which is then one reference count.
#[derive(Clone)]
pub struct App(Arc<AppParts>);

impl std::ops::Deref for App {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What an [`App`] holds.
pub struct AppParts {
    /// The settings it was built from.
    pub settings: Arc<Settings>,
    /// Domain services.
    pub services: Services,
    /// The executable schema.
    pub schema: CareslotSchema,
    /// Lines for the start-up log: which defaults were taken, which secrets made.
    pub notes: Vec<String>,
    /// Websocket limits and the count of open connections.
    pub ws: Arc<WsLimits>,
}

impl App {
    /// Builds the application: resolves secrets, connects and (unless disabled)
    /// migrates the database, creates the bootstrap admin.
    pub async fn build(settings: Settings, options: AppOptions) -> anyhow::Result<Self> {
        let secrets = Secrets::resolve(&settings)?;
        let mut notes = secrets.notes.clone();
        let mut db = db::connect_settings(&settings).await.with_context(|| {
            format!(
                "cannot open the database (DATABASE_URL) {}",
                redact(&settings.database_url)
            )
        })?;
        if let Some(counter) = options.statement_counter {
            db.set_metric_callback(move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
            });
        }
        if settings.migrate_on_start {
            db::migrate(&db).await.context("migrations failed")?;
        }
        telemetry::metrics::prometheus();
        let bus: SharedBus = match &settings.redis_url {
            Some(url) => Arc::new(
                RedisBus::connect(url, &settings.redis_channel, BUS_CAPACITY)
                    .await
                    .with_context(|| format!("cannot reach Redis (REDIS_URL) {}", redact(url)))?,
            ),
            None => Arc::new(MemoryBus::new(BUS_CAPACITY)),
        };
        let passwords = if options.fast_password_hashing {
            PasswordHasher::fast_for_tests()
        } else {
            PasswordHasher::new()
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut policy = Policy::from_settings(&settings);
        if let Some(url) = &settings.redis_url {
            // Limits and login throttles hold across instances.
            policy.counters = Arc::new(
                RedisCounters::connect(url, &settings.redis_channel)
                    .await
                    .with_context(|| format!("cannot reach Redis (REDIS_URL) {}", redact(url)))?,
            );
        }
        let has_replica = settings.database_replica_url.is_some();
        let replica = db::connect_replica(&settings)
            .await
            .context("cannot open the read replica (DATABASE_REPLICA_URL)")?
            .unwrap_or_else(|| db.clone());
        let services = Services {
            db,
            replica,
            clock: options.clock,
            keyring: secrets.keyring,
            tokens: secrets.tokens,
            passwords,
            bus,
            policy,
            slot_cache: Arc::new(domain::scheduling::SlotCache::reading_a_replica(
                std::time::Duration::from_secs(settings.slot_cache_seconds),
                // Replication on one network replays in milliseconds; a change is
                // not cached from the replica until it surely has.
                std::time::Duration::from_secs(if has_replica { 5 } else { 0 }),
            )),
            provider_turns: Arc::default(),
            booking_turns: Arc::default(),
            booking_batches: Arc::default(),
        };
        // Other instances' bookings reach this instance's slot cache over the bus.
        domain::scheduling::follow_slot_events(services.slot_cache.clone(), services.bus.subscribe());
        if let (Some(email), Some(password)) = (&settings.bootstrap_admin_email, &settings.bootstrap_admin_password) {
            let created = services
                .ensure_bootstrap_admin(email, password)
                .await
                .map_err(|e| anyhow::anyhow!("CARESLOT_BOOTSTRAP_ADMIN_EMAIL: {e}"))?;
            if created {
                notes.push(format!("created the bootstrap ADMIN {email}"));
            }
        }
        let schema = schema::build(
            services.clone(),
            SchemaOptions {
                max_depth: settings.graphql_max_depth,
                max_complexity: settings.graphql_max_complexity,
                max_aliases: settings.graphql_max_aliases,
                introspection: settings.mode != Mode::Production,
            },
        );
        if settings.database_is_default {
            notes.push(format!(
                "DATABASE_URL not set: embedded SQLite at {}",
                settings.database_url
            ));
        }
        if settings.redis_url.is_none() {
            notes.push("REDIS_URL not set: in-process event bus (one instance only)".into());
        }
        let ws = Arc::new(WsLimits {
            max_connections: settings.ws_max_connections,
            keepalive: std::time::Duration::from_secs(settings.ws_keepalive_seconds),
            send_buffer: settings.ws_send_buffer,
            open: Default::default(),
            hub: crate::ws::hub::Hub::new(schema.clone()),
        });
        Ok(Self(Arc::new(AppParts {
            settings: Arc::new(settings),
            services,
            schema,
            notes,
            ws,
        })))
    }
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }
}
