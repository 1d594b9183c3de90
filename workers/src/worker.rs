//! The worker loop: claim due jobs, run them concurrently, record outcomes;
//! sleep until the poll interval passes or an appointment event (a booking,
//! a change: new jobs) wakes it. On shutdown it stops claiming, lets what is
//! in flight finish within a grace period, and puts back what did not.

use crate::email::{EmailSender, EmailSetupError, OutboxSender, SmtpSender};
use crate::process::{self, BatchJob};
use crate::sms::{SmsSender, TwilioConfig, TwilioSender};
use domain::Services;
use domain::events::DomainEvent;
use domain::jobs::{ClaimCursor, ClaimOptions, ClaimedJob, Finish};
use domain::settings::Settings;
use futures_util::future::join_all;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tracing::Instrument as _;

/// Where messages go.
#[derive(Clone)]
pub struct Senders {
    /// Email (SMTP, or the outbox folder).
    pub email: Arc<dyn EmailSender>,
    /// SMS (Twilio), or none when not configured: SMS are then logged, not sent.
    pub sms: Option<Arc<dyn SmsSender>>,
}

/// Why the senders could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Email.
    #[error(transparent)]
    Email(#[from] EmailSetupError),
    /// Twilio.
    #[error("Twilio client: {0}")]
    Sms(#[from] reqwest::Error),
}

impl Senders {
    /// SMTP when `CARESLOT_SMTP_URL` is set, else files under `<data dir>/outbox`;
    /// Twilio when `TWILIO_*` are set, else none.
    pub fn from_settings(settings: &Settings) -> Result<Self, SetupError> {
        crate::install_crypto_provider();
        let timeout = Duration::from_secs(u64::try_from(settings.send_timeout_seconds).unwrap_or(30));
        let email: Arc<dyn EmailSender> = match &settings.smtp_url {
            Some(url) => Arc::new(SmtpSender::new(url, &settings.email_from, timeout)?),
            None => Arc::new(OutboxSender::new(
                settings.data_dir.join("outbox"),
                &settings.email_from,
            )?),
        };
        let sms: Option<Arc<dyn SmsSender>> = match (
            &settings.twilio_account_sid,
            &settings.twilio_auth_token,
            &settings.twilio_from_number,
        ) {
            (Some(sid), Some(token), Some(from)) => Some(Arc::new(TwilioSender::new(TwilioConfig {
                base_url: settings.twilio_base_url.clone(),
                account_sid: sid.clone(),
                auth_token: token.clone(),
                from: from.clone(),
                timeout,
            })?)),
            _ => None,
        };
        Ok(Self { email, sms })
    }
}

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Names this worker in lease tokens and logs.
    pub worker_id: String,
    /// Most jobs one claim takes (one batch).
    pub concurrency: u32,
    /// Batches claimed and run at once.
    pub batches: u32,
    /// How long a claim lasts.
    pub lease: Duration,
    /// The longest one send may take.
    pub send_timeout: Duration,
    /// How often an idle worker looks for due jobs.
    pub poll: Duration,
}

impl WorkerConfig {
    /// The configuration the settings describe, with a fresh worker id.
    pub fn from_settings(settings: &Settings) -> Self {
        let secs = |s: i64| Duration::from_secs(u64::try_from(s).unwrap_or(1));
        Self {
            worker_id: format!("worker-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            concurrency: u32::try_from(settings.worker_concurrency).unwrap_or(4),
            batches: u32::try_from(settings.worker_batches).unwrap_or(2),
            lease: secs(settings.worker_lease_seconds),
            send_timeout: secs(settings.send_timeout_seconds),
            poll: secs(settings.worker_poll_seconds),
        }
    }
}

/// Drains the job queue.
#[derive(Clone)]
pub struct Worker {
    services: Services,
    senders: Senders,
    config: WorkerConfig,
}

impl Worker {
    /// A worker over `services` sending through `senders`.
    pub fn new(services: Services, senders: Senders, config: WorkerConfig) -> Self {
        Self {
            services,
            senders,
            config,
        }
    }

    /// A claim of up to `concurrency` jobs, pending ones after `after`.
    fn claim_options(&self, after: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>) -> ClaimOptions {
        ClaimOptions {
            worker_id: self.config.worker_id.clone(),
            limit: self.config.concurrency,
            lease: chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::minutes(5)),
            after,
        }
    }

    /// Claims one batch of due jobs (from the oldest) and runs it; answers
    /// how many were claimed.
    pub async fn run_once(&self) -> domain::ServiceResult<usize> {
        let claimed = self.services.claim_jobs(&self.claim_options(None)).await?;
        let count = claimed.len();
        self.run_batch(&claimed).await;
        Ok(count)
    }

    /// Runs batches until no job is due (tests and tools); answers how many ran.
    pub async fn drain(&self) -> domain::ServiceResult<usize> {
        let mut total = 0;
        loop {
            let ran = self.run_once().await?;
            if ran == 0 {
                return Ok(total);
            }
            total += ran;
        }
    }

    /// Runs a claimed batch: the notices of the batch are read, and their
    /// reads audited, together; then the batch runs phase by phase
    /// ([`process`]). Jobs past their last attempt are dead-lettered unread.
    /// When reading the batch fails, each job is read and run alone (and
    /// fails or succeeds alone).
    async fn run_batch(&self, claimed: &[ClaimedJob]) {
        let ctx = self.context();
        let (exhausted, live): (Vec<&ClaimedJob>, Vec<&ClaimedJob>) =
            claimed.iter().partition(|c| process::exhausted(&c.job));
        let dead = join_all(exhausted.into_iter().map(|claimed| {
            let finish = process::exhausted_finish(&claimed.job);
            process::finish_one(&ctx, claimed, job_span(&claimed.job), Instant::now(), finish)
        }));
        let run = async {
            if live.is_empty() {
                return;
            }
            // Spans first: the batch's run time counts from here for every job.
            let spans: Vec<(tracing::Span, Instant)> =
                live.iter().map(|c| (job_span(&c.job), Instant::now())).collect();
            let jobs: Vec<&domain::jobs::Job> = live.iter().map(|c| &c.job).collect();
            match self.services.prepare_notices(&jobs).await {
                Ok(prepared) => {
                    let batch = live
                        .iter()
                        .zip(spans)
                        .zip(prepared)
                        .map(|((claimed, (span, started)), prepared)| BatchJob {
                            claimed,
                            span,
                            started,
                            prepared,
                        })
                        .collect();
                    process::run_batch(&ctx, batch).await;
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "reading a batch's notices failed; running its jobs one by one");
                    join_all(
                        live.iter()
                            .zip(spans)
                            .map(|(claimed, (span, started))| self.run_alone(&ctx, claimed, span, started)),
                    )
                    .await;
                }
            }
        };
        tokio::join!(dead, run);
    }

    /// Reads and runs one job as a batch of its own.
    async fn run_alone(&self, ctx: &process::Context<'_>, claimed: &ClaimedJob, span: tracing::Span, started: Instant) {
        let prepared = self
            .services
            .prepare_notices(&[&claimed.job])
            .instrument(span.clone())
            .await
            .map(|mut prepared| prepared.pop());
        match prepared {
            Ok(Some(prepared)) => {
                let job = BatchJob {
                    claimed,
                    span,
                    started,
                    prepared,
                };
                process::run_batch(ctx, vec![job]).await;
            }
            Ok(None) => {
                process::internal(&span, claimed, "no notice was prepared");
                process::finish_one(ctx, claimed, span, started, process::internal_retry()).await;
            }
            Err(e) => {
                process::internal(&span, claimed, &format!("{e:?}"));
                process::finish_one(ctx, claimed, span, started, process::internal_retry()).await;
            }
        }
    }

    fn context(&self) -> process::Context<'_> {
        process::Context {
            services: &self.services,
            senders: &self.senders,
            send_timeout: self.config.send_timeout,
        }
    }

    /// Runs until `shutdown` turns true: stop claiming, let in-flight jobs
    /// finish within `grace`, put back what has not. `batches` claim loops
    /// run at once, each with its own claim cursor: while one batch waits on
    /// its sends or the database, another is being claimed or recorded.
    pub async fn run(self, shutdown: watch::Receiver<bool>, grace: Duration) {
        tracing::info!(worker = %self.config.worker_id, batches = self.config.batches, "worker started");
        join_all((0..self.config.batches.max(1)).map(|_| self.claim_loop(shutdown.clone(), grace))).await;
        tracing::info!(worker = %self.config.worker_id, "worker stopped");
    }

    /// One claim loop of [`Worker::run`].
    async fn claim_loop(&self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let mut wake = self.services.bus.subscribe();
        let mut cursor = ClaimCursor::default();
        while !*shutdown.borrow() {
            let now = self.services.clock.now();
            let start = cursor.start(now);
            let claimed = match self.services.claim_jobs(&self.claim_options(start)).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::error!(error = ?e, "claiming jobs failed; trying again after the poll interval");
                    Vec::new()
                }
            };
            cursor.advance(start, &claimed, self.config.concurrency, now);
            if claimed.is_empty() {
                wait(&mut wake, &mut shutdown, self.config.poll).await;
                continue;
            }
            let work = self.run_batch(&claimed);
            tokio::pin!(work);
            tokio::select! {
                _ = &mut work => {}
                () = crate::stopped(&mut shutdown) => {
                    tracing::info!(in_flight = claimed.len(), "shutdown: finishing jobs in flight");
                    if tokio::time::timeout(grace, &mut work).await.is_err() {
                        for job in &claimed {
                            // Only jobs still running under this claim are put back.
                            let _ = self.services.finish_job(job, Finish::Release).await;
                        }
                        tracing::warn!("shutdown: put back the jobs that did not finish in time");
                    }
                }
            }
        }
    }
}

/// The `job.run` span of one job: it continues the trace of the request
/// that wrote the job (its stored `traceparent`).
fn job_span(job: &domain::jobs::Job) -> tracing::Span {
    let span = tracing::info_span!(
        "job.run",
        otel.name = %format!("job {}", job.kind.code()),
        otel.kind = "consumer",
        job.id = %job.id,
        job.kind = job.kind.code(),
        job.attempt = job.attempts,
        job.outcome = tracing::field::Empty,
    );
    if let Some(traceparent) = &job.trace_parent {
        telemetry::context::continue_from_traceparent(&span, traceparent);
    }
    span
}

/// Sleeps for `poll`, or until an appointment changes (new jobs may be due)
/// or shutdown. Polling alone is correct; the wake-up only shortens the wait.
async fn wait(wake: &mut broadcast::Receiver<Arc<DomainEvent>>, shutdown: &mut watch::Receiver<bool>, poll: Duration) {
    let sleep = tokio::time::sleep(poll);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return,
            () = crate::stopped(shutdown) => return,
            event = wake.recv() => match event {
                Ok(event) if matches!(*event, DomainEvent::Appointment(_)) => return,
                Ok(_) => {}
                // Missed events may have been appointments: look now.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                // No bus any more: the poll interval is all there is.
                Err(broadcast::error::RecvError::Closed) => {
                    sleep.as_mut().await;
                    return;
                }
            },
        }
    }
}
