//! careslot-worker: drains the durable job queue (confirmations, reminders and
//! notices by email and SMS) and runs the periodic sweeps. It runs as its own
//! process in production (any number of them) and inside `careslot-api` in the
//! embedded default ([`spawn`]).

mod chainer;
mod email;
pub mod metrics;
mod process;
mod send;
mod signal;
mod sms;
mod sweeper;
mod worker;

pub use chainer::{CHAIN_INTERVAL, run_audit_chainer};
pub use email::{EmailSender, EmailSetupError, OutboxSender, OutgoingEmail, SmtpSender};
pub use send::SendError;
pub use signal::shutdown_signal;
pub use sms::{OutgoingSms, SmsSender, TwilioConfig, TwilioSender};
pub use sweeper::{SweepReport, run_sweeps, sweep_once};
pub use worker::{Senders, SetupError, Worker, WorkerConfig};

use domain::Services;
use domain::settings::Settings;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Installs ring as the process's rustls provider (once; later calls do
/// nothing). reqwest is built without a provider of its own so that the
/// workspace has one TLS backend: every process that builds a reqwest client
/// calls this first.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is installed already: that one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Resolves once `shutdown` is true (never, if its sender is gone without saying so).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Starts a worker, the sweeps and the audit chainer over `services` as tasks; all stop when
/// `shutdown` turns true. Answers their handles, to await after the signal.
pub fn spawn(
    services: Services,
    settings: &Settings,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, SetupError> {
    let senders = Senders::from_settings(settings)?;
    let config = WorkerConfig::from_settings(settings);
    // In-flight sends are bounded by the send timeout; two of them per job.
    let grace = config.send_timeout * 2;
    let interval = Duration::from_secs(u64::try_from(settings.sweep_interval_seconds).unwrap_or(60));
    let worker = Worker::new(services.clone(), senders, config);
    Ok(vec![
        tokio::spawn(worker.run(shutdown.clone(), grace)),
        tokio::spawn(run_sweeps(services.clone(), interval, shutdown.clone())),
        tokio::spawn(run_audit_chainer(services, CHAIN_INTERVAL, shutdown)),
    ])
}
