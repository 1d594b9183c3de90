//! Bookings of one provider wait here only for an earlier booking in flight
//! whose interval overlaps theirs.
//!
//! A booking used to wait for its provider's whole turn ([`super::ProviderTurns`])
//! until its batch had committed, so one provider's bookings were written one
//! batch at a time however far apart their intervals: at 50 providers, no more
//! than 50 bookings could be on their way to the database at once, and a
//! provider with many callers at 8:00 served them one commit after another.
//! Bookings of distinct intervals now go on together (a batch checks its own
//! bookings against each other, see `batch`), and only a booking racing for an
//! interval already on its way waits: for that booking's answer, after which
//! the crowd behind a winner learns from its note (`taken`) instead of the
//! database, as before.
//!
//! This is an economy, not the guard: a booking waits for the latest earlier
//! overlapping booking only (so a crowd forms a queue and each release wakes
//! one waiter), which can leave two overlapping bookings in flight when their
//! overlaps chain through a third. The batch's own check, the provider's lock
//! and the exclusion constraint decide.

use super::availability::Interval;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// A booking in flight: its interval and the signal its end closes.
struct InFlight {
    interval: Interval,
    /// Closed when the booking has its answer; waiters wake on the close.
    /// Also the booking's identity: its turn holds the same `Arc`.
    done: Arc<Semaphore>,
}

#[derive(Default)]
struct State {
    by_provider: HashMap<Uuid, Vec<InFlight>>,
}

/// The bookings in flight, by provider.
#[derive(Default)]
pub struct BookingTurns {
    state: Mutex<State>,
}

impl std::fmt::Debug for BookingTurns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let providers = self.lock().by_provider.len();
        f.debug_struct("BookingTurns").field("providers", &providers).finish()
    }
}

/// A booking's turn: while it lives, later overlapping bookings of the
/// provider wait.
#[must_use = "the turn ends when the guard is dropped"]
pub struct BookingTurn<'a> {
    turns: &'a BookingTurns,
    provider: Uuid,
    done: Arc<Semaphore>,
}

impl BookingTurns {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Lists of bookings in flight: a panic elsewhere leaves them whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no earlier booking of `provider` overlapping `interval`
    /// is in flight (the latest such one has ended), then answers the turn.
    pub async fn wait(&self, provider: Uuid, interval: Interval) -> BookingTurn<'_> {
        let done = Arc::new(Semaphore::new(0));
        let before = {
            let mut state = self.lock();
            let list = state.by_provider.entry(provider).or_default();
            let before = list
                .iter()
                .rev()
                .find(|earlier| earlier.interval.overlaps(&interval))
                .map(|earlier| earlier.done.clone());
            list.push(InFlight {
                interval,
                done: done.clone(),
            });
            before
        };
        // The turn exists from here, so a cancelled wait still releases it.
        let turn = BookingTurn {
            turns: self,
            provider,
            done,
        };
        if let Some(before) = before {
            // No permit is ever added: the wait ends when the earlier booking closes it.
            let _ = before.acquire().await;
        }
        turn
    }

    /// Bookings of `provider` in flight (tests).
    #[cfg(test)]
    fn in_flight(&self, provider: Uuid) -> usize {
        self.lock().by_provider.get(&provider).map_or(0, Vec::len)
    }
}

impl Drop for BookingTurn<'_> {
    fn drop(&mut self) {
        let mut state = self.turns.lock();
        if let Some(list) = state.by_provider.get_mut(&self.provider) {
            list.retain(|booking| !Arc::ptr_eq(&booking.done, &self.done));
            if list.is_empty() {
                state.by_provider.remove(&self.provider);
            }
        }
        drop(state);
        self.done.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use futures_util::FutureExt;

    fn at(minute: i64, minutes: i64) -> Interval {
        let start = Utc.with_ymd_and_hms(2030, 1, 7, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute);
        Interval::new(start, start + chrono::Duration::minutes(minutes))
    }

    #[test]
    fn distinct_intervals_of_one_provider_go_together() {
        let turns = BookingTurns::default();
        let provider = Uuid::new_v4();
        let first = turns.wait(provider, at(0, 30)).now_or_never().expect("free");
        let second = turns
            .wait(provider, at(30, 30))
            .now_or_never()
            .expect("an interval that only touches the first one does not wait");
        assert_eq!(turns.in_flight(provider), 2);
        drop((first, second));
        assert_eq!(turns.in_flight(provider), 0, "ended turns are forgotten");
    }

    #[test]
    fn an_overlapping_booking_waits_for_the_earlier_one() {
        let turns = BookingTurns::default();
        let provider = Uuid::new_v4();
        let first = turns.wait(provider, at(0, 30)).now_or_never().expect("free");
        let mut second = Box::pin(turns.wait(provider, at(15, 30)));
        assert!((&mut second).now_or_never().is_none(), "an overlapping booking waits");
        assert!(
            turns.wait(Uuid::new_v4(), at(0, 30)).now_or_never().is_some(),
            "another provider's booking of the same interval does not wait"
        );
        drop(first);
        assert!(
            second.now_or_never().is_some(),
            "the wait ends with the earlier booking"
        );
    }

    #[test]
    fn a_crowd_for_one_interval_goes_in_arrival_order() {
        let turns = BookingTurns::default();
        let provider = Uuid::new_v4();
        let first = turns.wait(provider, at(0, 30)).now_or_never().expect("free");
        let order = Mutex::new(Vec::new());
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            let crowd = futures_util::future::join_all((0..5).map(|n| {
                let (turns, order) = (&turns, &order);
                async move {
                    let _turn = turns.wait(provider, at(0, 30)).await;
                    order.lock().expect("order").push(n);
                    tokio::task::yield_now().await;
                }
            }));
            let release = async {
                tokio::task::yield_now().await;
                drop(first);
            };
            tokio::join!(crowd, release);
        });
        assert_eq!(*order.lock().expect("order"), vec![0, 1, 2, 3, 4]);
        assert_eq!(turns.in_flight(provider), 0);
    }

    #[test]
    fn a_wait_given_up_ends_its_turn() {
        let turns = BookingTurns::default();
        let provider = Uuid::new_v4();
        let first = turns.wait(provider, at(0, 30)).now_or_never().expect("free");
        let mut waiting = Box::pin(turns.wait(provider, at(0, 30)));
        assert!((&mut waiting).now_or_never().is_none());
        drop(waiting);
        assert_eq!(turns.in_flight(provider), 1, "the abandoned booking left no turn");
        drop(first);
        assert!(turns.wait(provider, at(0, 30)).now_or_never().is_some());
    }
}
