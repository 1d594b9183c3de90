//! The durable job queue: jobs live in the database, are written in the same
//! transaction as the change that causes them, and are claimed by workers under
//! a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite the pool's single
//! connection makes a claim transaction run alone). A crashed worker's lease
//! expires and the job is claimed again; failures retry with exponential
//! backoff and jitter, then the job is dead-lettered for an admin to inspect
//! and retry. Every send is recorded per job and channel ([`deliveries`]), so a
//! retry does not send again what already went out.

mod admin;
pub mod backoff;
mod deliveries;
mod model;
mod queue;
pub mod redact;
mod sweeps;

pub use admin::QueueDepth;
pub use deliveries::{Channel, ClaimCheck, Delivery, DeliveryRecord, DeliveryStatus, Settled};
pub use model::{ClaimedJob, Job, JobKind, JobStatus, NewJob, NoticePayload};
pub use queue::{ClaimCursor, ClaimOptions, Finish};
pub(crate) use queue::{cancel_pending, enqueue_all, enqueue_traced};
