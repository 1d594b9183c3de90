//! The services a request or job works with: database, clock, keys, bus.
//!
//! Each domain module adds its operations to [`Services`] in its own `impl` block.

use crate::auth::Actor;
use crate::auth::{PasswordHasher, TokenKeys};
use crate::clock::SharedClock;
use crate::error::ServiceResult;
use crate::events::SharedBus;
use crate::phi::{AuditRecord, Keyring, RequestMeta, write_audit};
use crate::settings::Settings;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

/// Tunables of the domain rules, taken from [`Settings`].
#[derive(Clone, Debug)]
pub struct Policy {
    /// How long a hold lasts.
    pub hold_ttl: chrono::Duration,
    /// How long a refresh token lives.
    pub refresh_ttl: chrono::Duration,
    /// The longest `availableSlots` range.
    pub max_slot_range: chrono::Duration,
    /// Default reminder offsets (locations and types may override).
    pub reminder_offsets: crate::notifications::ReminderOffsets,
    /// Default SMS quiet hours in each location's zone (locations may override).
    pub sms_quiet_hours: Option<crate::notifications::QuietHours>,
    /// Attempts before a job is dead-lettered.
    pub job_max_attempts: i32,
    /// First retry delay (doubling, with jitter).
    pub backoff_base: chrono::Duration,
    /// Longest retry delay.
    pub backoff_max: chrono::Duration,
    /// How long finished jobs are kept.
    pub job_retention: chrono::Duration,
    /// BOOKED becomes NOSHOW this long after the end.
    pub noshow_grace: chrono::Duration,
    /// Counters for login throttling (in process unless Redis is configured).
    pub counters: crate::limits::SharedCounters,
}

impl Policy {
    /// The policy the settings describe.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            hold_ttl: chrono::Duration::seconds(settings.hold_ttl_seconds),
            refresh_ttl: chrono::Duration::days(settings.refresh_token_ttl_days),
            max_slot_range: chrono::Duration::days(settings.max_slot_range_days),
            reminder_offsets: settings.reminder_offsets.clone(),
            sms_quiet_hours: settings.sms_quiet_hours,
            job_max_attempts: i32::try_from(settings.job_max_attempts).unwrap_or(i32::MAX),
            backoff_base: chrono::Duration::seconds(settings.job_backoff_base_seconds),
            backoff_max: chrono::Duration::seconds(settings.job_backoff_max_seconds),
            job_retention: chrono::Duration::days(settings.job_retention_days),
            noshow_grace: chrono::Duration::minutes(settings.noshow_grace_minutes),
            counters: std::sync::Arc::new(crate::limits::MemoryCounters::default()),
        }
    }
}

/// Everything a domain operation needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct Services {
    /// The database pool (the primary): every write, and every read that must
    /// see the caller's own writes.
    pub db: DatabaseConnection,
    /// Reads that tolerate replication lag (slot search, lists): the read
    /// replica when `DATABASE_REPLICA_URL` is set, else the same pool as `db`.
    /// A booking re-checks its slot on the primary, so a stale search can
    /// never double-book.
    pub replica: DatabaseConnection,
    /// The clock.
    pub clock: SharedClock,
    /// PHI keys.
    pub keyring: Keyring,
    /// Access-token keys.
    pub tokens: TokenKeys,
    /// Password hashing.
    pub passwords: PasswordHasher,
    /// The event bus.
    pub bus: SharedBus,
    /// Rule tunables.
    pub policy: Policy,
    /// What slot search reads, kept in process and dropped by domain events.
    pub slot_cache: std::sync::Arc<crate::scheduling::SlotCache>,
    /// Writers of one provider take turns here before they take a connection.
    pub provider_turns: std::sync::Arc<crate::scheduling::ProviderTurns>,
    /// Bookings in flight, by provider: an overlapping booking waits here.
    pub booking_turns: std::sync::Arc<crate::scheduling::BookingTurns>,
    /// Bookings waiting to be written together (group commit).
    pub booking_batches: std::sync::Arc<crate::scheduling::BookingBatches>,
}

/// Who is calling and from where: what every service operation receives.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The authenticated user, if any.
    pub actor: Option<Actor>,
    /// Request origin, for the audit trail.
    pub meta: RequestMeta,
    /// Why presented credentials were refused (expired, tampered), so that an
    /// operation needing a user can say so instead of "authentication required".
    pub credential_error: Option<&'static str>,
}

impl Caller {
    /// An authenticated caller with no request metadata (jobs, tools, tests).
    pub fn system(actor: Actor) -> Self {
        Self {
            actor: Some(actor),
            ..Self::default()
        }
    }

    /// The actor, or `UNAUTHENTICATED`.
    pub fn actor(&self) -> ServiceResult<&Actor> {
        self.actor.as_ref().ok_or(crate::ServiceError::Unauthenticated(
            self.credential_error.unwrap_or("authentication required"),
        ))
    }
}

impl Services {
    /// Publishes events of a committed change. They go out together (one
    /// round trip to Redis for all of them, not one each, while the caller
    /// waits), handed to the bus in order.
    pub async fn publish(&self, events: impl IntoIterator<Item = crate::events::DomainEvent>) {
        let sends = events.into_iter().map(|event| {
            // This instance forgets what changed before anyone can ask again;
            // other instances do when the event reaches them over the bus.
            self.slot_cache.on_event(&event);
            self.bus.publish(event)
        });
        futures_util::future::join_all(sends).await;
    }

    /// Appends an audit record for `caller` on `conn`.
    pub async fn audit<C: ConnectionTrait + TransactionTrait>(
        &self,
        conn: &C,
        caller: &Caller,
        record: AuditRecord,
    ) -> ServiceResult<()> {
        write_audit(conn, self.clock.as_ref(), caller.actor.as_ref(), &caller.meta, record).await
    }
}
