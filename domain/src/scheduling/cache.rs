//! An in-process cache of what slot search reads: appointment types and
//! locations (never changed once created), each provider's schedule at a
//! location, and each provider's occupancy of a searched range.
//!
//! The read path is cache check, database, cache fill. Every domain event
//! naming a provider drops that provider's entries: events published by this
//! instance synchronously (so a caller sees their own booking at once), events
//! of other instances when they arrive over the bus. A load that started
//! before an invalidation is not stored (a generation per provider tells), and
//! every entry also expires after a time-to-live (less up to a quarter, at
//! random, so entries filled together expire apart), which bounds staleness where
//! no event can help (a lost bus message). Reading a replica, a load shortly
//! after an invalidation may still see the old state; such loads are served
//! but not kept (the replica grace), so the cache never stretches replication
//! lag. Bookings read from it only what never changes (types, locations) and
//! the notes of this instance's recent bookings (`taken`, which can only
//! refuse); they check availability on the primary.

use super::availability::{Busy, Interval, Occupancy, Schedule};
use crate::events::DomainEvent;
use chrono::{DateTime, Utc};
use entity::{appointment_type, location};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Entries kept at most; past it the cache starts over (searches are cheap to refill).
const MAX_ENTRIES: usize = 50_000;

/// What occupies one provider around a range, before the per-request filters
/// (the caller's own holds, holds that expired since).
#[derive(Clone, Debug, Default)]
pub struct RawOccupancy {
    /// Time off.
    pub time_off: Vec<Interval>,
    /// Appointments in blocking statuses, with their types' buffers.
    pub busy: Vec<Busy>,
    /// Holds: interval, holder, expiry.
    pub holds: Vec<(Interval, Uuid, DateTime<Utc>)>,
}

impl RawOccupancy {
    /// The occupancy as `caller` sees it at `now`: expired holds and the
    /// caller's own holds do not count.
    pub fn view(&self, now: DateTime<Utc>, caller: Option<Uuid>) -> Occupancy {
        Occupancy {
            time_off: self.time_off.clone(),
            busy: self.busy.clone(),
            holds: self
                .holds
                .iter()
                .filter(|(_, holder, expires)| *expires > now && Some(*holder) != caller)
                .map(|(interval, _, _)| *interval)
                .collect(),
        }
    }
}

struct Entry<T> {
    value: T,
    stored: Instant,
}

/// A searched range, as (start, end).
type RangeKey = (DateTime<Utc>, DateTime<Utc>);

/// What is kept of one provider; dropped whole when the provider changes.
#[derive(Default)]
struct ProviderEntries {
    /// location -> the schedule there, `None` when the provider has no rule there.
    schedules: HashMap<Uuid, Entry<Option<Schedule>>>,
    /// (range start, range end) -> occupancy.
    occupancy: HashMap<RangeKey, Entry<Arc<RawOccupancy>>>,
}

/// Where a provider's entries stand: (the cache's epoch, the provider's count
/// of invalidations). A fill carries the generation its load started at.
pub type Generation = (u64, u64);

#[derive(Default)]
struct Inner {
    /// Moves on when everything is dropped.
    epoch: u64,
    /// Moves on with every invalidation of the provider; kept when entries are dropped.
    generations: HashMap<Uuid, u64>,
    /// When each provider was last invalidated (for the replica grace).
    invalidated: HashMap<Uuid, Instant>,
    kinds: HashMap<Uuid, Entry<appointment_type::Model>>,
    locations: HashMap<Uuid, Entry<location::Model>>,
    providers: HashMap<Uuid, ProviderEntries>,
    entries: usize,
}

impl Inner {
    fn generation(&self, provider: Uuid) -> Generation {
        (self.epoch, self.generations.get(&provider).copied().unwrap_or(0))
    }
}

/// The cache. A time-to-live of zero turns it off.
pub struct SlotCache {
    ttl: Duration,
    replica_grace: Duration,
    inner: Mutex<Inner>,
    /// Intervals this instance booked a moment ago (kept in step by the same events).
    taken: super::taken::RecentlyTaken,
}

impl std::fmt::Debug for SlotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SlotCache {
    /// A cache whose entries live `ttl` at most (zero: nothing is kept).
    pub fn new(ttl: Duration) -> Self {
        Self::reading_a_replica(ttl, Duration::ZERO)
    }

    /// A cache filled from a read replica: what a provider's loads read within
    /// `grace` of its last invalidation is not kept (the replica may not have
    /// replayed the change yet).
    pub fn reading_a_replica(ttl: Duration, grace: Duration) -> Self {
        Self {
            ttl,
            replica_grace: grace,
            inner: Mutex::new(Inner::default()),
            taken: super::taken::RecentlyTaken::default(),
        }
    }

    /// True when a load of `provider` that began at `generation` may be kept.
    fn keeps(&self, inner: &Inner, provider: Uuid, generation: Generation) -> bool {
        inner.generation(provider) == generation
            && inner
                .invalidated
                .get(&provider)
                .is_none_or(|at| at.elapsed() >= self.replica_grace)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut inner)
    }

    fn fresh<T: Clone>(&self, entry: Option<&Entry<T>>) -> Option<T> {
        // An entry past its time-to-live is left for the next fill to replace.
        entry.filter(|e| e.stored.elapsed() < self.ttl).map(|e| e.value.clone())
    }

    /// The generation of `provider`: take it before loading, hand it back to a fill.
    pub fn generation(&self, provider: Uuid) -> Generation {
        self.with(|inner| inner.generation(provider))
    }

    /// A cached appointment type.
    pub fn kind(&self, id: Uuid) -> Option<appointment_type::Model> {
        self.with(|inner| self.fresh(inner.kinds.get(&id)))
    }

    /// A cached location.
    pub fn location(&self, id: Uuid) -> Option<location::Model> {
        self.with(|inner| self.fresh(inner.locations.get(&id)))
    }

    /// A cached schedule (`Some(None)`: known to have no rule there).
    pub fn schedule(&self, location: Uuid, provider: Uuid) -> Option<Option<Schedule>> {
        self.with(|inner| self.fresh(inner.providers.get(&provider)?.schedules.get(&location)))
    }

    /// A cached occupancy of `range`.
    pub fn occupancy(&self, provider: Uuid, range: Interval) -> Option<Arc<RawOccupancy>> {
        self.with(|inner| self.fresh(inner.providers.get(&provider)?.occupancy.get(&(range.start, range.end))))
    }

    /// Keeps an appointment type (they never change).
    pub fn fill_kind(&self, kind: &appointment_type::Model) {
        self.fill(|inner, stored| {
            let value = kind.clone();
            inner.kinds.insert(kind.id, Entry { value, stored });
        });
    }

    /// Keeps a location (they never change).
    pub fn fill_location(&self, location: &location::Model) {
        self.fill(|inner, stored| {
            let value = location.clone();
            inner.locations.insert(location.id, Entry { value, stored });
        });
    }

    /// Keeps a schedule loaded while `provider` was at `generation`.
    pub fn fill_schedule(&self, location: Uuid, provider: Uuid, generation: Generation, schedule: Option<Schedule>) {
        self.fill(|inner, stored| {
            if self.keeps(inner, provider, generation) {
                let entries = inner.providers.entry(provider).or_default();
                entries.schedules.insert(
                    location,
                    Entry {
                        value: schedule,
                        stored,
                    },
                );
            }
        });
    }

    /// Keeps an occupancy loaded while `provider` was at `generation`.
    pub fn fill_occupancy(
        &self,
        provider: Uuid,
        range: Interval,
        generation: Generation,
        occupancy: Arc<RawOccupancy>,
    ) {
        self.fill(|inner, stored| {
            if self.keeps(inner, provider, generation) {
                let entries = inner.providers.entry(provider).or_default();
                let value = occupancy;
                entries
                    .occupancy
                    .insert((range.start, range.end), Entry { value, stored });
            }
        });
    }

    fn fill(&self, f: impl FnOnce(&mut Inner, Instant)) {
        if self.ttl.is_zero() {
            return;
        }
        self.with(|inner| {
            inner.entries += 1;
            if inner.entries > MAX_ENTRIES {
                // Start over; the generations stay, so loads in flight stay fenced.
                inner.kinds.clear();
                inner.locations.clear();
                inner.providers.clear();
                inner.entries = 0;
            }
            f(inner, self.jittered_now());
        });
    }

    /// Now, back-dated by up to a quarter of the time-to-live: entries filled
    /// together (a busy minute's searches) then expire spread over that
    /// quarter instead of all at once, so their refills do not queue up
    /// behind each other on the database in one burst.
    fn jittered_now(&self) -> Instant {
        let now = Instant::now();
        now.checked_sub(self.ttl.mul_f64(rand::random::<f64>() / 4.0))
            .unwrap_or(now)
    }

    /// Drops what `event` may have changed.
    pub fn on_event(&self, event: &DomainEvent) {
        let provider = match event {
            DomainEvent::Slot(slot) => slot.provider_id.0,
            DomainEvent::Appointment(change) => change.provider_id.0,
        };
        self.invalidate(provider);
        self.taken.on_event(event);
    }

    /// Notes that this instance booked `provider`'s `interval` (see [`super::taken`]);
    /// nothing is noted when the cache is off.
    pub fn note_taken(&self, provider: Uuid, interval: Interval) {
        if !self.ttl.is_zero() {
            self.taken.note(provider, interval);
        }
    }

    /// True when this instance booked an interval of `provider` overlapping
    /// `interval` a moment ago and nothing has freed time of the provider since.
    pub fn recently_taken(&self, provider: Uuid, interval: Interval) -> bool {
        self.taken.covers(provider, interval)
    }

    /// Drops every entry of `provider` and moves its generation on.
    pub fn invalidate(&self, provider: Uuid) {
        self.with(|inner| {
            *inner.generations.entry(provider).or_insert(0) += 1;
            if !self.replica_grace.is_zero() {
                inner.invalidated.insert(provider, Instant::now());
            }
            inner.providers.remove(&provider);
        });
    }

    /// Drops everything (a bus receiver that fell behind lost events).
    pub fn clear(&self) {
        self.with(|inner| {
            inner.epoch += 1;
            inner.providers.clear();
        });
        self.taken.clear();
    }
}

/// Keeps `cache` in step with the bus: every event (this instance's and other
/// instances') drops what it changed; a receiver that fell behind drops
/// everything. Runs until the bus closes.
pub fn follow(
    cache: Arc<SlotCache>,
    mut events: tokio::sync::broadcast::Receiver<Arc<DomainEvent>>,
) -> tokio::task::JoinHandle<()> {
    use tokio::sync::broadcast::error::RecvError;
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => cache.on_event(&event),
                Err(RecvError::Lagged(_)) => cache.clear(),
                Err(RecvError::Closed) => break,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{SlotChangeReason, SlotEvent, SlotStatus};

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).expect("instant")
    }

    fn booked(provider: Uuid) -> DomainEvent {
        DomainEvent::Slot(SlotEvent {
            provider_id: provider.into(),
            start: at(0),
            end: at(30),
            status: SlotStatus::Busy,
            reason: SlotChangeReason::Booked,
        })
    }

    fn occupied() -> Arc<RawOccupancy> {
        Arc::new(RawOccupancy {
            busy: vec![Busy {
                interval: Interval::new(at(0), at(30)),
                buffer_before: chrono::Duration::zero(),
                buffer_after: chrono::Duration::zero(),
            }],
            ..RawOccupancy::default()
        })
    }

    #[test]
    fn an_event_drops_its_provider_only() {
        let cache = SlotCache::new(Duration::from_secs(60));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let range = Interval::new(at(0), at(600));
        cache.fill_occupancy(a, range, cache.generation(a), occupied());
        cache.fill_occupancy(b, range, cache.generation(b), occupied());
        assert!(cache.occupancy(a, range).is_some());
        cache.on_event(&booked(a));
        assert!(cache.occupancy(a, range).is_none(), "a's booking drops a's entries");
        assert!(cache.occupancy(b, range).is_some(), "b is untouched");
        assert!(
            cache.occupancy(b, Interval::new(at(0), at(601))).is_none(),
            "another range is another entry"
        );
    }

    #[test]
    fn a_load_that_began_before_an_event_is_not_kept() {
        let cache = SlotCache::new(Duration::from_secs(60));
        let provider = Uuid::new_v4();
        let range = Interval::new(at(0), at(600));
        let before = cache.generation(provider);
        cache.on_event(&booked(provider));
        cache.fill_occupancy(provider, range, before, occupied());
        assert!(cache.occupancy(provider, range).is_none(), "stale fill refused");
        let before = cache.generation(provider);
        cache.clear();
        cache.fill_schedule(Uuid::new_v4(), provider, before, None);
        cache.fill_occupancy(provider, range, before, occupied());
        assert!(
            cache.occupancy(provider, range).is_none(),
            "a clear fences loads in flight too"
        );
        cache.fill_occupancy(provider, range, cache.generation(provider), occupied());
        assert!(cache.occupancy(provider, range).is_some());
    }

    #[test]
    fn entries_expire_and_a_zero_lifetime_keeps_nothing() {
        let provider = Uuid::new_v4();
        let range = Interval::new(at(0), at(600));
        let off = SlotCache::new(Duration::ZERO);
        off.fill_occupancy(provider, range, off.generation(provider), occupied());
        assert!(off.occupancy(provider, range).is_none());
        let short = SlotCache::new(Duration::from_millis(20));
        short.fill_occupancy(provider, range, short.generation(provider), occupied());
        assert!(short.occupancy(provider, range).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(short.occupancy(provider, range).is_none());
    }

    #[test]
    fn entries_filled_together_expire_apart() {
        let cache = SlotCache::new(Duration::from_secs(2));
        let range = Interval::new(at(0), at(600));
        let providers: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
        for provider in &providers {
            cache.fill_occupancy(*provider, range, cache.generation(*provider), occupied());
        }
        assert!(providers.iter().all(|p| cache.occupancy(*p, range).is_some()));
        // Each entry lives between 1.5 s and 2 s: at 1.75 s about half are gone.
        std::thread::sleep(Duration::from_millis(1750));
        let live = providers
            .iter()
            .filter(|p| cache.occupancy(**p, range).is_some())
            .count();
        assert!(live > 0 && live < providers.len(), "{live} of 100 still live");
    }

    #[test]
    fn reading_a_replica_a_fill_right_after_an_invalidation_is_served_not_kept() {
        let cache = SlotCache::reading_a_replica(Duration::from_secs(60), Duration::from_millis(30));
        let provider = Uuid::new_v4();
        let range = Interval::new(at(0), at(600));
        cache.on_event(&booked(provider));
        cache.fill_occupancy(provider, range, cache.generation(provider), occupied());
        assert!(
            cache.occupancy(provider, range).is_none(),
            "the replica may lag the booking"
        );
        std::thread::sleep(Duration::from_millis(40));
        cache.fill_occupancy(provider, range, cache.generation(provider), occupied());
        assert!(cache.occupancy(provider, range).is_some());
    }

    #[test]
    fn a_view_leaves_out_expired_holds_and_the_callers_own() {
        let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
        let raw = RawOccupancy {
            holds: vec![
                (Interval::new(at(0), at(30)), me, at(10)),
                (Interval::new(at(30), at(60)), other, at(10)),
                (Interval::new(at(60), at(90)), other, at(2)),
            ],
            ..RawOccupancy::default()
        };
        let seen = raw.view(at(5), Some(me));
        assert_eq!(seen.holds, vec![Interval::new(at(30), at(60))]);
        assert_eq!(raw.view(at(5), None).holds.len(), 2);
    }
}
