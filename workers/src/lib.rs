//! careslot-worker: drains the durable job queue and runs the periodic sweeps.
//!
//! The queue, senders and sweeps arrive with the reminder-worker issue; this
//! crate holds the process skeleton they plug into.
