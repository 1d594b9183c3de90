//! Shared subscriptions: each distinct subscription runs once per instance.
//!
//! Ten thousand clients watching one provider's slots used to cost ten
//! thousand executions of the same subscription per event: async-graphql
//! resolved the event, built its `Value` and serialized the response once per
//! subscriber (~30% of the server's time per delivery, issue 8). Here the
//! subscription runs once, each result is serialized to JSON once, and every
//! subscriber's frame is that text with its own operation id around it (one
//! frame, shared, for all subscribers with the same id and protocol).
//!
//! Subscriptions share an execution when they have the same document,
//! operation name, variables and extensions *and the same actor* (user, role,
//! provider, patient, locations and session of the access token). That is
//! exactly what the subscription resolvers read: they check the actor once when
//! the subscription starts and then deliver what the event says, the same for
//! whoever asked (`schema/src/roots/subscription.rs`; the event types read no
//! caller). Two different users never share, so what one is allowed to see
//! never reaches another. A request's origin (IP, user agent, request id) is
//! not part of the key: no subscription resolver writes the audit trail; one
//! that did would have to run per subscriber.
//!
//! A subscriber gets the results the execution produces after it joined, never
//! earlier ones: joining and delivering take the same lock. (An event already
//! on the bus but not yet turned into a result when a subscriber joins, a
//! window of microseconds, does reach it; the bus itself is no more precise,
//! an event from another instance arriving through Redis a moment later.)
//! The execution starts with its first subscriber (its resolver
//! attaches to the bus then) and stops when the last one leaves. When it ends
//! by itself (an error, or falling behind the bus with `missedEvents`) every
//! subscriber gets that last result and `complete`.
//!
//! Frames are pushed into each connection's bounded queue without waiting: an
//! execution never waits for one slow client. A connection whose queue is full
//! is marked overflowed, and its session closes it as too slow (`super`).

use super::protocol::{Frames, Protocol};
use async_graphql::{Data, Request};
use axum::extract::ws::Utf8Bytes;
use domain::auth::Actor;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use schema::CareslotSchema;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::mpsc;

/// Metric: client subscriptions attached to shared executions on this instance
/// (`careslot_subscriptions_active` counts the executions).
pub const SUBSCRIBERS: &str = "careslot_ws_subscribers";

/// What a connection's session writes, in order.
#[derive(Debug)]
pub enum Out {
    /// A text frame.
    Frame(Utf8Bytes),
    /// The last frame of operation `token` (its `complete`); the session forgets the operation.
    Ended {
        /// The operation.
        token: u64,
        /// Its `complete`.
        frame: Utf8Bytes,
    },
}

/// The sending side of one connection's queue.
#[derive(Debug)]
pub struct Outbox {
    queue: mpsc::Sender<Out>,
    overflowed: AtomicBool,
}

impl Outbox {
    /// A queue of `capacity` messages and its receiving side.
    pub fn new(capacity: usize) -> (Arc<Self>, mpsc::Receiver<Out>) {
        let (queue, receiver) = mpsc::channel(capacity);
        let outbox = Arc::new(Self {
            queue,
            overflowed: AtomicBool::new(false),
        });
        (outbox, receiver)
    }

    /// Queues `out` without waiting. A full queue marks the connection
    /// overflowed (it is closed as too slow) and `out` is dropped with it.
    pub fn push(&self, out: Out) {
        match self.queue.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.overflowed.store(true, Ordering::Relaxed),
            // The session has ended; its subscriptions are leaving.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Whether a message found the queue full.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

/// The actor, compared and hashed whole: the authorization scope of a shared execution.
#[derive(Debug, PartialEq, Eq)]
struct Scope(Actor);

impl Hash for Scope {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let a = &self.0;
        (
            a.user_id,
            a.role,
            a.provider_id,
            a.patient_id,
            &a.locations[..],
            a.session_id,
        )
            .hash(state);
    }
}

/// What makes two subscriptions the same.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Key {
    query: String,
    operation_name: Option<String>,
    /// Variables and extensions as JSON text.
    variables: String,
    extensions: String,
    scope: Scope,
}

/// The subscribers of one execution with the same id and protocol: one frame serves them all.
struct Group {
    frames: Frames,
    /// Subscriber token -> its connection's queue.
    members: HashMap<u64, Arc<Outbox>>,
}

/// One running subscription and its subscribers.
struct Execution {
    key: Arc<Key>,
    groups: Mutex<HashMap<(Protocol, String), Group>>,
    task: OnceLock<tokio::task::AbortHandle>,
}

impl Execution {
    fn groups(&self) -> MutexGuard<'_, HashMap<(Protocol, String), Group>> {
        self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one result (JSON text) for every subscriber.
    fn deliver(&self, payload: &str) {
        for group in self.groups().values() {
            let frame = group.frames.next(payload);
            for outbox in group.members.values() {
                outbox.push(Out::Frame(frame.clone()));
            }
        }
    }
}

/// The shared executions of an instance.
pub struct Hub {
    schema: CareslotSchema,
    live: Mutex<HashMap<Arc<Key>, Arc<Execution>>>,
    tokens: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub running subscriptions through `schema`.
    pub fn new(schema: CareslotSchema) -> Arc<Self> {
        Arc::new(Self {
            schema,
            live: Mutex::default(),
            tokens: AtomicU64::new(1),
        })
    }

    /// A token naming one operation of a connection (shared or not), unique in the instance.
    pub fn token(&self) -> u64 {
        self.tokens.fetch_add(1, Ordering::Relaxed)
    }

    /// Executions running now (tests).
    pub fn executions(&self) -> usize {
        self.live().len()
    }

    /// Subscribers attached to executions now (tests).
    pub fn subscribers(&self) -> usize {
        self.live()
            .values()
            .map(|execution| execution.groups().values().map(|g| g.members.len()).sum::<usize>())
            .sum()
    }

    fn live(&self) -> MutexGuard<'_, HashMap<Arc<Key>, Arc<Execution>>> {
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Attaches operation `id` of a connection to the execution of `request`
    /// for `actor`, starting it when none runs. `session` is the connection's
    /// data (its caller); an execution started here runs with it.
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe(
        self: &Arc<Self>,
        request: Request,
        actor: &Actor,
        session: &Arc<Data>,
        protocol: Protocol,
        id: &str,
        token: u64,
        outbox: &Arc<Outbox>,
    ) -> Subscription {
        let key = Arc::new(Key {
            variables: serde_json::to_string(&request.variables).unwrap_or_default(),
            // Sorted: the same extensions make the same key whatever their order.
            extensions: serde_json::to_string(&request.extensions.iter().collect::<std::collections::BTreeMap<_, _>>())
                .unwrap_or_default(),
            query: request.query.clone(),
            operation_name: request.operation_name.clone(),
            scope: Scope(actor.clone()),
        });
        let group = (protocol, id.to_owned());
        // Lock order everywhere: the hub, then an execution's groups. Joining
        // and leaving hold the hub's lock throughout, so an execution is never
        // found by a joiner once it has been taken out of the map.
        let mut live = self.live();
        let (execution, started) = match live.get(&key) {
            Some(execution) => (execution.clone(), false),
            None => {
                let execution = Arc::new(Execution {
                    key: key.clone(),
                    groups: Mutex::default(),
                    task: OnceLock::new(),
                });
                live.insert(key, execution.clone());
                (execution, true)
            }
        };
        execution
            .groups()
            .entry(group.clone())
            .or_insert_with(|| Group {
                frames: Frames::new(protocol, id),
                members: HashMap::new(),
            })
            .members
            .insert(token, outbox.clone());
        if started {
            // Started once its first subscriber is in: its first result (an
            // error, say) may come at once, on another thread.
            let stream = self.schema.execute_stream(request, Some(session.clone()));
            let task = tokio::spawn(run(self.clone(), execution.clone(), stream));
            let _ = execution.task.set(task.abort_handle());
        }
        drop(live);
        metrics::gauge!(SUBSCRIBERS).increment(1.0);
        Subscription {
            hub: self.clone(),
            execution,
            group,
            token,
        }
    }

    /// Detaches a subscriber; the execution stops with its last one.
    fn leave(&self, execution: &Arc<Execution>, group: &(Protocol, String), token: u64) {
        let mut live = self.live();
        let mut groups = execution.groups();
        if let Some(members) = groups.get_mut(group) {
            members.members.remove(&token);
            if members.members.is_empty() {
                groups.remove(group);
            }
        }
        if groups.is_empty() {
            if live.get(&execution.key).is_some_and(|e| Arc::ptr_eq(e, execution)) {
                live.remove(&execution.key);
            }
            // Dropping the stream drops the resolver's bus receiver.
            if let Some(task) = execution.task.get() {
                task.abort();
            }
        }
    }

    /// An execution that ended by itself: no one joins it any more, and
    /// every subscriber gets `complete`.
    fn finish(&self, execution: &Arc<Execution>) {
        let mut live = self.live();
        if live.get(&execution.key).is_some_and(|e| Arc::ptr_eq(e, execution)) {
            live.remove(&execution.key);
        }
        drop(live);
        let groups = std::mem::take(&mut *execution.groups());
        for group in groups.into_values() {
            for (token, outbox) in group.members {
                outbox.push(Out::Ended {
                    token,
                    frame: group.frames.complete(),
                });
            }
        }
    }
}

/// Runs one shared execution: each result serialized once, queued for all.
async fn run(hub: Arc<Hub>, execution: Arc<Execution>, mut stream: BoxStream<'static, async_graphql::Response>) {
    while let Some(response) = stream.next().await {
        match serde_json::to_string(&response) {
            Ok(payload) => execution.deliver(&payload),
            // A response is plain JSON values; this does not happen.
            Err(error) => tracing::error!(%error, "a subscription result could not be serialized"),
        }
    }
    hub.finish(&execution);
}

/// One connection's place in a shared execution; leaves it when dropped.
pub struct Subscription {
    hub: Arc<Hub>,
    execution: Arc<Execution>,
    group: (Protocol, String),
    token: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.leave(&self.execution, &self.group, self.token);
        metrics::gauge!(SUBSCRIBERS).decrement(1.0);
    }
}
