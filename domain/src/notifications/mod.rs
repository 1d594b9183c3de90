//! Notifications: what to tell a patient, when, and on which channel.
//!
//! [`plan`] writes the jobs inside the transaction of the change that causes
//! them (booking, reschedule, cancellation); [`prepare`] reads, at send time,
//! what a job's notice says and where it goes; [`content`] and [`ics`] render it.

pub mod config;
pub mod content;
pub mod ics;
mod plan;
mod prepare;

pub use config::{QuietHours, ReminderOffsets};
pub use content::{NoticeKind, RenderedNotice};
pub use prepare::{Prepared, PreparedNotice};
