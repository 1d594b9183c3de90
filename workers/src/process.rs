//! Running a claimed batch in one send phase: one read checks which claims
//! still hold for the calls and which channels an earlier attempt settled;
//! every call of the batch (each job's email and SMS) then runs concurrently,
//! each in its job's span; one statement records how each call ended, and
//! the channels with nothing to send as `skipped`, as soon as the last call
//! ends. A channel the deployment does not have (no SMS configured) is
//! neither sent nor recorded: that is the deployment's fact, not the job's. Then the jobs that ended done are finished in one statement; the
//! rarer endings (retry, dead letter, deferral) are written job by job.
//!
//! Every per-job rule of a job run alone still holds: a job whose claim is
//! lost is left alone from then on, a settled channel is not sent again, SMS
//! in quiet hours wait without a record, and a database failure ends the
//! jobs it touched as a retry.

use crate::email::OutgoingEmail;
use crate::send::SendError;
use crate::sms::OutgoingSms;
use crate::worker::Senders;
use domain::Services;
use domain::jobs::redact::redact;
use domain::jobs::{Channel, ClaimCheck, ClaimedJob, DeliveryRecord, DeliveryStatus, Finish};
use domain::notifications::{Prepared, PreparedNotice};
use futures_util::future::join_all;
use std::time::{Duration, Instant};
use tracing::{Instrument as _, Span};

/// What a batch runs with.
pub(crate) struct Context<'a> {
    pub services: &'a Services,
    pub senders: &'a Senders,
    /// The longest one send may take.
    pub send_timeout: Duration,
}

/// One claimed job entering a batch run.
pub(crate) struct BatchJob<'a> {
    /// The job under its claim.
    pub claimed: &'a ClaimedJob,
    /// Its `job.run` span: everything about this job is recorded in it.
    pub span: Span,
    /// When its run began (for the run-duration metric).
    pub started: Instant,
    /// What it should send, read (and audited) with its batch.
    pub prepared: Prepared,
}

/// What became of one channel.
enum ChannelOutcome {
    /// Sent now or before, or nothing to send.
    Settled,
    /// Held back (quiet hours) until this instant.
    Deferred(chrono::DateTime<chrono::Utc>),
    /// Failed; the error says whether a retry may help.
    Failed(SendError),
}

/// Why a job left the channel phases early.
enum Stop {
    /// Nothing to send at all: done, with the reason as its note.
    Done(String),
    /// The claim is gone: stop touching this job.
    LeaseLost,
    /// The database failed under us: the job ends as a retry.
    Internal(String),
}

/// A job on its way through the phases.
struct Run<'a> {
    claimed: &'a ClaimedJob,
    span: Span,
    started: Instant,
    notice: Option<Box<PreparedNotice>>,
    outcomes: Vec<ChannelOutcome>,
    stop: Option<Stop>,
}

/// What a channel means to do for one job, decided before it starts.
enum Plan {
    /// Nothing recorded: the next run (after the quiet hours) decides afresh.
    Defer(chrono::DateTime<chrono::Utc>),
    /// Nothing to send, for this reason (recorded as `skipped`).
    Skip(&'static str),
    /// The deployment has no such channel: nothing to send, and nothing to
    /// record on every job (a retry asks again, and sends once it has one).
    Absent,
    /// Call the peer.
    Send,
}

/// True when `job` was claimed more times than it may run: every earlier
/// claim lapsed (its worker died or hung), and it is dead-lettered unprepared.
pub(crate) fn exhausted(job: &domain::jobs::Job) -> bool {
    job.attempts > job.max_attempts
}

/// The dead letter of an exhausted job (see [`exhausted`]).
pub(crate) fn exhausted_finish(job: &domain::jobs::Job) -> Finish {
    // Claims past the maximum come from lapsed leases: the worker holding it
    // died (or hung) every time.
    Finish::Dead {
        error: format!("gave up after {} claims that never finished", job.attempts - 1),
    }
}

/// Runs a prepared batch to its end and records every job's ending.
pub(crate) async fn run_batch(ctx: &Context<'_>, jobs: Vec<BatchJob<'_>>) {
    let mut runs: Vec<Run> = jobs
        .into_iter()
        .map(|job| {
            let BatchJob {
                claimed,
                span,
                started,
                prepared,
            } = job;
            let (notice, stop) = match prepared {
                Prepared::Skip(reason) => {
                    let job = &claimed.job;
                    tracing::info!(parent: &span, job = %job.id, kind = job.kind.code(), %reason, "nothing to send");
                    (None, Some(Stop::Done(reason)))
                }
                Prepared::Send(notice) => (Some(notice), None),
            };
            Run {
                claimed,
                span,
                started,
                notice,
                outcomes: Vec::with_capacity(2),
                stop,
            }
        })
        .collect();
    send_phase(ctx, &mut runs).await;
    finish_batch(ctx, runs).await;
}

/// Checks the batch's claims, makes every call that may go, and records
/// how each ended (and what had nothing to send) in one statement.
async fn send_phase(ctx: &Context<'_>, runs: &mut [Run<'_>]) {
    let active: Vec<usize> = (0..runs.len())
        .filter(|i| runs[*i].notice.is_some() && runs[*i].stop.is_none())
        .collect();
    if active.is_empty() {
        return;
    }
    let claims: Vec<&ClaimedJob> = active.iter().map(|i| runs[*i].claimed).collect();
    let call_time = chrono::Duration::from_std(ctx.send_timeout).unwrap_or(chrono::Duration::seconds(30));
    let checks = match ctx.services.check_claims(&claims, call_time).await {
        Ok(checks) => checks,
        Err(e) => {
            let text = format!("{e:?}");
            for index in active {
                runs[index].stop = Some(Stop::Internal(text.clone()));
            }
            return;
        }
    };
    // Calls to make; the channels with nothing to send and their records.
    let mut calls: Vec<(usize, Channel)> = Vec::new();
    let mut skipped: Vec<usize> = Vec::new();
    let mut records: Vec<DeliveryRecord> = Vec::new();
    for (index, check) in active.into_iter().zip(checks) {
        let run = &mut runs[index];
        let settled = match check {
            ClaimCheck::LeaseLost => {
                run.stop = Some(Stop::LeaseLost);
                continue;
            }
            ClaimCheck::Holds(settled) => settled,
        };
        let Some(notice) = run.notice.as_deref() else {
            continue;
        };
        for channel in Channel::ALL {
            if settled.get(channel).is_some() {
                run.outcomes.push(ChannelOutcome::Settled);
                continue;
            }
            match plan(ctx.senders, channel, notice) {
                Plan::Defer(until) => run.outcomes.push(ChannelOutcome::Deferred(until)),
                Plan::Skip(reason) => {
                    tracing::info!(parent: &run.span, job = %run.claimed.job.id, channel = channel.code(), reason, "nothing to send on this channel");
                    skipped.push(index);
                    records.push(skip_record(run.claimed, channel, reason));
                }
                Plan::Absent => run.outcomes.push(ChannelOutcome::Settled),
                Plan::Send => calls.push((index, channel)),
            }
        }
    }
    let results = join_all(calls.iter().map(|(index, channel)| send(ctx, *channel, &runs[*index]))).await;
    // Recorded the moment the last call ends: a crash from here on sends again
    // whatever this statement has not yet made `sent`.
    records.extend(
        calls
            .iter()
            .zip(&results)
            .map(|((index, channel), result)| record(runs[*index].claimed, *channel, result)),
    );
    let recorded = if records.is_empty() {
        Ok(())
    } else {
        ctx.services.record_deliveries(&records).await
    };
    let outcomes =
        skipped
            .into_iter()
            .map(|index| (index, ChannelOutcome::Settled))
            .chain(calls.into_iter().zip(results).map(|((index, _), result)| {
                let outcome = match result {
                    Ok(_) => ChannelOutcome::Settled,
                    Err(e) => ChannelOutcome::Failed(e),
                };
                (index, outcome)
            }));
    match &recorded {
        Ok(()) => {
            for (index, outcome) in outcomes {
                runs[index].outcomes.push(outcome);
            }
        }
        Err(e) => {
            let text = format!("{e:?}");
            for (index, _) in outcomes {
                runs[index].stop = Some(Stop::Internal(text.clone()));
            }
        }
    }
}

fn plan(senders: &Senders, channel: Channel, notice: &PreparedNotice) -> Plan {
    match channel {
        Channel::Email => match &notice.email {
            Ok(_) => Plan::Send,
            Err(reason) => Plan::Skip(reason),
        },
        Channel::Sms => match (&notice.phone, notice.sms_wait_until, &senders.sms) {
            (Ok(_), Some(until), Some(_)) => Plan::Defer(until),
            (_, _, None) => Plan::Absent,
            (Err(reason), _, _) => Plan::Skip(reason),
            (Ok(_), None, Some(_)) => Plan::Send,
        },
    }
}

/// Calls the peer for one job, in that job's span, bounded by the send timeout.
async fn send(ctx: &Context<'_>, channel: Channel, run: &Run<'_>) -> Result<String, SendError> {
    let job = &run.claimed.job;
    let Some(notice) = run.notice.as_deref() else {
        return Err(SendError::Transient("nothing prepared".into()));
    };
    let timeout = ctx.send_timeout;
    // Outbound calls: their own spans, with the channel only (never the address).
    let call = async {
        match channel {
            Channel::Email => {
                let to = notice.email.clone().map_err(|r| SendError::Permanent(r.into()))?;
                let email = OutgoingEmail {
                    to,
                    message_id: format!("<{}.{}@careslot>", job.id, channel.code()),
                    notice: notice.rendered.clone(),
                };
                let span = tracing::info_span!("email.send", otel.kind = "client", channel = "email");
                bounded(timeout, ctx.senders.email.send(email)).instrument(span).await
            }
            Channel::Sms => {
                let (Ok(to), Some(sender)) = (&notice.phone, &ctx.senders.sms) else {
                    return Err(SendError::Permanent("nothing to send by SMS".into()));
                };
                let sms = OutgoingSms {
                    to: to.clone(),
                    body: notice.rendered.sms.clone(),
                };
                let span = tracing::info_span!("sms.send", otel.kind = "client", channel = "sms");
                bounded(timeout, sender.send(sms)).instrument(span).await
            }
        }
    };
    async {
        let result = call.await;
        match &result {
            Ok(_) => tracing::info!(job = %job.id, channel = channel.code(), "sent"),
            Err(error) => {
                tracing::warn!(job = %job.id, channel = channel.code(), permanent = error.is_permanent(), error = %redact(&error.to_string()), "send failed");
            }
        }
        result
    }
    .instrument(run.span.clone())
    .await
}

/// The record of a channel with nothing to send, and why.
fn skip_record<'a>(claimed: &'a ClaimedJob, channel: Channel, reason: &str) -> DeliveryRecord<'a> {
    DeliveryRecord {
        claimed,
        channel,
        status: DeliveryStatus::Skipped,
        provider_ref: None,
        error: Some(reason.to_owned()),
    }
}

fn record<'a>(claimed: &'a ClaimedJob, channel: Channel, result: &Result<String, SendError>) -> DeliveryRecord<'a> {
    let (status, provider_ref, error) = match result {
        Ok(reference) => (DeliveryStatus::Sent, Some(reference.clone()), None),
        Err(e) if e.is_permanent() => (DeliveryStatus::Failed, None, Some(redact(&e.to_string()))),
        Err(e) => (DeliveryStatus::Retry, None, Some(redact(&e.to_string()))),
    };
    DeliveryRecord {
        claimed,
        channel,
        status,
        provider_ref,
        error,
    }
}

/// The job's end from its channels': a permanent failure dead-letters, a
/// transient one retries, a deferral waits; otherwise it is done.
fn combine(outcomes: Vec<ChannelOutcome>) -> Finish {
    let mut permanent = Vec::new();
    let mut transient = Vec::new();
    let mut defer = None;
    for outcome in outcomes {
        match outcome {
            ChannelOutcome::Failed(e @ SendError::Permanent(_)) => permanent.push(redact(&e.to_string())),
            ChannelOutcome::Failed(e) => transient.push(redact(&e.to_string())),
            ChannelOutcome::Deferred(until) => defer = Some(until),
            ChannelOutcome::Settled => {}
        }
    }
    if !permanent.is_empty() {
        permanent.extend(transient);
        Finish::Dead {
            error: permanent.join("; "),
        }
    } else if !transient.is_empty() {
        Finish::Retry {
            error: transient.join("; "),
        }
    } else if let Some(until) = defer {
        Finish::Defer { until }
    } else {
        Finish::Done { note: None }
    }
}

/// Records every job's ending: the batch's done jobs in one statement, the
/// rest one by one.
async fn finish_batch(ctx: &Context<'_>, runs: Vec<Run<'_>>) {
    let mut done = Vec::new();
    let mut others = Vec::new();
    for run in runs {
        let Run {
            claimed,
            span,
            started,
            outcomes,
            stop,
            ..
        } = run;
        let finish = match stop {
            Some(Stop::LeaseLost) => continue,
            Some(Stop::Done(reason)) => Finish::Done { note: Some(reason) },
            Some(Stop::Internal(error)) => {
                internal(&span, claimed, &error);
                others.push((claimed, span, started, internal_retry()));
                continue;
            }
            None => combine(outcomes),
        };
        match finish {
            Finish::Done { .. } => done.push((claimed, span, started, finish)),
            finish => others.push((claimed, span, started, finish)),
        }
    }
    if !done.is_empty() {
        let notes: Vec<(&ClaimedJob, Option<&str>)> = done
            .iter()
            .map(|(claimed, _, _, finish)| match finish {
                Finish::Done { note } => (*claimed, note.as_deref()),
                _ => (*claimed, None),
            })
            .collect();
        match ctx.services.finish_done(&notes).await {
            Ok(finished) => {
                for (claimed, span, started, finish) in done {
                    if finished.contains(&claimed.job.id) {
                        report(ctx, &span, claimed, &finish, started);
                    } else {
                        lapsed(&span, claimed);
                    }
                }
            }
            Err(e) => {
                let error = format!("{e:?}");
                for (claimed, span, started, _) in done {
                    internal(&span, claimed, &error);
                    others.push((claimed, span, started, internal_retry()));
                }
            }
        }
    }
    join_all(
        others
            .into_iter()
            .map(|(claimed, span, started, finish)| finish_one(ctx, claimed, span, started, finish)),
    )
    .await;
}

/// Writes one job's ending on its own (rare endings, lone jobs).
pub(crate) async fn finish_one(ctx: &Context<'_>, claimed: &ClaimedJob, span: Span, started: Instant, finish: Finish) {
    let written = ctx
        .services
        .finish_job(claimed, finish.clone())
        .instrument(span.clone())
        .await;
    match written {
        Ok(true) => report(ctx, &span, claimed, &finish, started),
        Ok(false) => lapsed(&span, claimed),
        Err(e) => {
            tracing::error!(parent: &span, job = %claimed.job.id, error = ?e, "could not record how the job ended; the lease will lapse");
        }
    }
}

/// Logs a database failure that ends a job as a retry. The cause stays in
/// the log (it names no patient data: jobs hold ids only); the job gets a
/// generic note ([`internal_retry`]).
pub(crate) fn internal(span: &Span, claimed: &ClaimedJob, error: &str) {
    tracing::error!(parent: span, job = %claimed.job.id, error, "job failed on an internal error");
}

/// The ending of a job the database failed under.
pub(crate) fn internal_retry() -> Finish {
    Finish::Retry {
        error: "internal error (see the worker log)".into(),
    }
}

fn lapsed(span: &Span, claimed: &ClaimedJob) {
    tracing::warn!(parent: span, job = %claimed.job.id, "the claim lapsed before the job finished; another worker has it");
}

fn report(ctx: &Context<'_>, span: &Span, claimed: &ClaimedJob, finish: &Finish, started: Instant) {
    let job = &claimed.job;
    let outcome = finish_name(finish);
    span.record("job.outcome", outcome);
    tracing::debug!(parent: span, job = %job.id, kind = job.kind.code(), attempt = job.attempts, outcome, "job ran");
    crate::metrics::job_finished(job, finish, started, ctx.services.clock.now());
}

fn finish_name(finish: &Finish) -> &'static str {
    match finish {
        Finish::Done { .. } => "done",
        Finish::Retry { .. } => "retry",
        Finish::Dead { .. } => "dead",
        Finish::Defer { .. } => "deferred",
        Finish::Release => "released",
    }
}

/// Bounds a send by `limit`: past it, the call is dropped and counts as transient.
async fn bounded(
    limit: Duration,
    send: impl std::future::Future<Output = Result<String, SendError>>,
) -> Result<String, SendError> {
    tokio::time::timeout(limit, send)
        .await
        .unwrap_or_else(|_| Err(SendError::Transient(format!("no answer within {} s", limit.as_secs()))))
}
