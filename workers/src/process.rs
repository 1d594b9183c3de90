//! Running one claimed job: read what it should send, then each channel in
//! turn under its delivery record, then record how the job ended.

use crate::email::OutgoingEmail;
use crate::send::SendError;
use crate::sms::OutgoingSms;
use crate::worker::Senders;
use domain::jobs::redact::redact;
use domain::jobs::{Channel, ClaimedJob, DeliveryStart, DeliveryStatus, Finish};
use domain::notifications::{Prepared, PreparedNotice};
use domain::{ServiceResult, Services};
use std::time::Duration;
use tracing::Instrument as _;

/// What became of one channel.
enum ChannelOutcome {
    /// Sent now or before, or nothing to send.
    Settled,
    /// Held back (quiet hours) until this instant.
    Deferred(chrono::DateTime<chrono::Utc>),
    /// Failed; the error says whether a retry may help.
    Failed(SendError),
    /// The claim is gone: stop touching this job.
    LeaseLost,
}

/// Runs `claimed` to its end and records it; answers the finish written.
pub(crate) async fn process(
    services: &Services,
    senders: &Senders,
    send_timeout: Duration,
    claimed: &ClaimedJob,
) -> ServiceResult<Option<Finish>> {
    let job = &claimed.job;
    if exhausted(job) {
        // Claims past the maximum come from lapsed leases: the worker holding it
        // died (or hung) every time.
        let finish = Finish::Dead {
            error: format!("gave up after {} claims that never finished", job.attempts - 1),
        };
        return finish_as(services, claimed, finish).await;
    }
    let prepared = services.prepare_notice(job).await?;
    process_prepared(services, senders, send_timeout, claimed, prepared).await
}

/// True when `job` was claimed more times than it may run: every earlier
/// claim lapsed (its worker died or hung), and it is dead-lettered unprepared.
pub(crate) fn exhausted(job: &domain::jobs::Job) -> bool {
    job.attempts > job.max_attempts
}

/// Runs `claimed` to its end from its notice, prepared (and audited) already
/// with the rest of its batch; answers the finish written.
pub(crate) async fn process_prepared(
    services: &Services,
    senders: &Senders,
    send_timeout: Duration,
    claimed: &ClaimedJob,
    prepared: Prepared,
) -> ServiceResult<Option<Finish>> {
    let job = &claimed.job;
    let notice = match prepared {
        Prepared::Skip(reason) => {
            tracing::info!(job = %job.id, kind = job.kind.code(), %reason, "nothing to send");
            return finish_as(services, claimed, Finish::Done { note: Some(reason) }).await;
        }
        Prepared::Send(notice) => notice,
    };
    let email = email_channel(services, senders, send_timeout, claimed, &notice).await?;
    if matches!(email, ChannelOutcome::LeaseLost) {
        return Ok(None);
    }
    let sms = sms_channel(services, senders, send_timeout, claimed, &notice).await?;
    if matches!(sms, ChannelOutcome::LeaseLost) {
        return Ok(None);
    }
    let finish = combine([email, sms]);
    finish_as(services, claimed, finish).await
}

/// The job's end from its channels': a permanent failure dead-letters, a
/// transient one retries, a deferral waits; otherwise it is done.
fn combine(outcomes: [ChannelOutcome; 2]) -> Finish {
    let mut permanent = Vec::new();
    let mut transient = Vec::new();
    let mut defer = None;
    for outcome in outcomes {
        match outcome {
            ChannelOutcome::Failed(e @ SendError::Permanent(_)) => permanent.push(redact(&e.to_string())),
            ChannelOutcome::Failed(e) => transient.push(redact(&e.to_string())),
            ChannelOutcome::Deferred(until) => defer = Some(until),
            ChannelOutcome::Settled | ChannelOutcome::LeaseLost => {}
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

async fn finish_as(services: &Services, claimed: &ClaimedJob, finish: Finish) -> ServiceResult<Option<Finish>> {
    if services.finish_job(claimed, finish.clone()).await? {
        Ok(Some(finish))
    } else {
        tracing::warn!(job = %claimed.job.id, "the claim lapsed before the job finished; another worker has it");
        Ok(None)
    }
}

async fn email_channel(
    services: &Services,
    senders: &Senders,
    send_timeout: Duration,
    claimed: &ClaimedJob,
    notice: &PreparedNotice,
) -> ServiceResult<ChannelOutcome> {
    let channel = Channel::Email;
    if let Some(outcome) = start(services, claimed, channel, send_timeout).await? {
        return Ok(outcome);
    }
    let to = match &notice.email {
        Ok(to) => to.clone(),
        Err(reason) => return skip(services, claimed, channel, reason).await,
    };
    let email = OutgoingEmail {
        to,
        message_id: format!("<{}.{}@careslot>", claimed.job.id, channel.code()),
        notice: notice.rendered.clone(),
    };
    // Outbound call: its own span, with the channel only (never the address).
    let span = tracing::info_span!("email.send", otel.kind = "client", channel = "email");
    let result = bounded(send_timeout, senders.email.send(email)).instrument(span).await;
    settle(services, claimed, channel, result).await
}

async fn sms_channel(
    services: &Services,
    senders: &Senders,
    send_timeout: Duration,
    claimed: &ClaimedJob,
    notice: &PreparedNotice,
) -> ServiceResult<ChannelOutcome> {
    let channel = Channel::Sms;
    if let (Ok(_), Some(until), Some(_)) = (&notice.phone, notice.sms_wait_until, &senders.sms) {
        // Nothing recorded: the next run (after the quiet hours) decides afresh.
        return Ok(ChannelOutcome::Deferred(until));
    }
    if let Some(outcome) = start(services, claimed, channel, send_timeout).await? {
        return Ok(outcome);
    }
    let Some(sender) = &senders.sms else {
        tracing::info!(job = %claimed.job.id, "SMS not configured (no TWILIO_*): not sent");
        return skip(services, claimed, channel, "SMS is not configured").await;
    };
    let to = match &notice.phone {
        Ok(to) => to.clone(),
        Err(reason) => return skip(services, claimed, channel, reason).await,
    };
    let sms = OutgoingSms {
        to,
        body: notice.rendered.sms.clone(),
    };
    let span = tracing::info_span!("sms.send", otel.kind = "client", channel = "sms");
    let result = bounded(send_timeout, sender.send(sms)).instrument(span).await;
    settle(services, claimed, channel, result).await
}

/// `None` when the channel may be used now; otherwise what it comes to.
async fn start(
    services: &Services,
    claimed: &ClaimedJob,
    channel: Channel,
    send_timeout: Duration,
) -> ServiceResult<Option<ChannelOutcome>> {
    let call_time = chrono::Duration::from_std(send_timeout).unwrap_or(chrono::Duration::seconds(30));
    Ok(match services.begin_delivery(claimed, channel, call_time).await? {
        DeliveryStart::Go => None,
        DeliveryStart::Settled(_) => Some(ChannelOutcome::Settled),
        DeliveryStart::LeaseLost => Some(ChannelOutcome::LeaseLost),
    })
}

async fn skip(
    services: &Services,
    claimed: &ClaimedJob,
    channel: Channel,
    reason: &str,
) -> ServiceResult<ChannelOutcome> {
    services
        .record_delivery(claimed, channel, DeliveryStatus::Skipped, None, Some(reason.to_owned()))
        .await?;
    Ok(ChannelOutcome::Settled)
}

async fn settle(
    services: &Services,
    claimed: &ClaimedJob,
    channel: Channel,
    result: Result<String, SendError>,
) -> ServiceResult<ChannelOutcome> {
    match result {
        Ok(reference) => {
            tracing::info!(job = %claimed.job.id, channel = channel.code(), "sent");
            services
                .record_delivery(claimed, channel, DeliveryStatus::Sent, Some(reference), None)
                .await?;
            Ok(ChannelOutcome::Settled)
        }
        Err(error) => {
            let text = redact(&error.to_string());
            tracing::warn!(job = %claimed.job.id, channel = channel.code(), permanent = error.is_permanent(), error = %text, "send failed");
            let status = if error.is_permanent() {
                DeliveryStatus::Failed
            } else {
                DeliveryStatus::Retry
            };
            services
                .record_delivery(claimed, channel, status, None, Some(text))
                .await?;
            Ok(ChannelOutcome::Failed(error))
        }
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
