//! The reminder queue: due jobs drained by two workers with a no-op sender
//! (so the figure is the queue's, not SMTP's). A second run kills one worker
//! mid-run (its task is dropped where it stands, claims and all, as a killed
//! process would leave them) and starts a replacement: every job must end done,
//! and every message must have been handed to the sender exactly once.

use super::Ctx;
use crate::cpu::CpuTimes;
use crate::report::Scenario;
use crate::server;
use api::app::{App, AppOptions};
use domain::settings::Settings;
use sea_orm::{ConnectionTrait, Statement};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use workers::{EmailSender, OutgoingEmail, SendError, Senders, Worker, WorkerConfig};

/// Accepts every email at once and remembers each message id it was handed.
#[derive(Default)]
struct NoopSender {
    seen: Mutex<HashMap<String, u32>>,
}

#[async_trait::async_trait]
impl EmailSender for NoopSender {
    async fn send(&self, email: OutgoingEmail) -> Result<String, SendError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        *seen.entry(email.message_id.clone()).or_default() += 1;
        Ok(email.message_id)
    }
}

impl NoopSender {
    /// Distinct messages handed over so far.
    fn distinct(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// (distinct messages, messages handed over more than once).
    fn tally(&self) -> (usize, usize) {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        (seen.len(), seen.values().filter(|n| **n > 1).count())
    }
}

async fn count(ctx: &Ctx, sql: &str) -> anyhow::Result<i64> {
    let row = ctx
        .db
        .query_one_raw(Statement::from_string(ctx.db.get_database_backend(), sql.to_owned()))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    Ok(row.try_get::<i64>("", "n")?)
}

/// Puts `jobs` due confirmation jobs in the queue (after retiring what earlier
/// scenarios left there), spread over the seeded appointments.
async fn fill(ctx: &Ctx, jobs: usize, tag: &str) -> anyhow::Result<()> {
    ctx.db
        .execute_unprepared("UPDATE jobs SET status = 'cancelled' WHERE status IN ('pending', 'running')")
        .await?;
    let appointments = ctx.clinic.booked.clamp(1, 2000);
    let per = jobs.div_ceil(appointments);
    let sql = format!(
        "INSERT INTO jobs (id, kind, payload, status, run_at, attempts, max_attempts, appointment_id, dedupe_key, created_at, updated_at) \
         SELECT gen_random_uuid(), 'confirmation', json_build_object('appointment_id', a.id, 'version', a.version), 'pending', \
                now() - interval '1 minute', 0, 5, a.id, '{tag}:' || g || ':' || a.id, now(), now() \
         FROM (SELECT id, version FROM appointments WHERE status = 'booked' ORDER BY start_at LIMIT {appointments}) a \
         CROSS JOIN generate_series(1, {per}) g LIMIT {jobs}"
    );
    ctx.db.execute_unprepared(&sql).await?;
    Ok(())
}

/// An in-process worker over its own services (its own pool), like a process of its own.
async fn worker(ctx: &Ctx, sender: Arc<NoopSender>, name: &str, lease: Duration) -> anyhow::Result<Worker> {
    let dir = ctx.launch.dir.join(format!("worker-{name}"));
    let dir_text = dir.display().to_string();
    let settings = Settings::for_tests(&[
        ("DATABASE_URL", ctx.launch.database_url.as_str()),
        ("CARESLOT_DATA_DIR", dir_text.as_str()),
        ("CARESLOT_JWT_SECRET", server::JWT_SECRET),
        ("CARESLOT_PHI_KEYS", server::PHI_KEYS),
        ("CARESLOT_PHI_INDEX_KEY", server::PHI_INDEX_KEY),
        ("CARESLOT_MIGRATE_ON_START", "false"),
        ("CARESLOT_DB_MAX_CONNECTIONS", "8"),
    ])?;
    let app = App::build(settings, AppOptions::default()).await?;
    let senders = Senders {
        email: sender,
        sms: None,
    };
    Ok(Worker::new(
        app.services.clone(),
        senders,
        WorkerConfig {
            worker_id: format!("bench-{name}"),
            // A claimed batch is a few statements whatever its size: the batch
            // size, not the number of tasks, is what carries throughput.
            concurrency: 200,
            // Three batches in flight: while one waits on the database, the
            // others are claimed, sent or recorded (12.3k jobs/s with two,
            // 13.3k with three, 12.9k with four; BENCHMARKS.md).
            batches: 3,
            lease,
            // A delivery starts only while the lease outlasts the send timeout.
            send_timeout: lease / 3,
            poll: Duration::from_millis(200),
        },
    ))
}

const FINISHED: &str = "SELECT count(*) AS n FROM jobs WHERE status IN ('done', 'dead') AND dedupe_key LIKE";

async fn wait_finished(ctx: &Ctx, tag: &str, jobs: usize, at_least: usize, limit: Duration) -> anyhow::Result<i64> {
    let deadline = Instant::now() + limit;
    loop {
        let n = count(ctx, &format!("{FINISHED} '{tag}:%'")).await?;
        if n as usize >= at_least.min(jobs) || Instant::now() > deadline {
            return Ok(n);
        }
        // The count scans the run's jobs: poll gently, it competes with the workers.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> Scenario {
    let mut scenario = Scenario::new("reminder queue, no-op sender, 2 workers");
    if let Err(e) = throughput(ctx, &mut scenario).await {
        scenario.check("the throughput run completes", false, format!("{e:#}"));
    }
    if let Err(e) = kill_restart(ctx, &mut scenario).await {
        scenario.check("the kill-and-restart run completes", false, format!("{e:#}"));
    }
    scenario
}

async fn throughput(ctx: &Ctx, scenario: &mut Scenario) -> anyhow::Result<()> {
    // More jobs than the run can drain at the target rate: the run is bounded by time.
    let jobs = if ctx.config.smoke { 400 } else { 200_000 };
    let tag = "bench-throughput";
    fill(ctx, jobs, tag).await?;
    let sender = Arc::new(NoopSender::default());
    let (stop, stopping) = watch::channel(false);
    let lease = Duration::from_secs(60);
    let one = worker(ctx, sender.clone(), "a", lease).await?;
    let two = worker(ctx, sender.clone(), "b", lease).await?;
    let started = Instant::now();
    let cpu = CpuTimes::now(ctx.server.pid());
    let tasks = [
        tokio::spawn(one.run(stopping.clone(), Duration::from_secs(10))),
        tokio::spawn(two.run(stopping, Duration::from_secs(10))),
    ];
    let limit = if ctx.config.smoke {
        Duration::from_secs(60)
    } else {
        ctx.config.duration * 2
    };
    // Progress is read from the sender (in process, free) rather than by
    // counting the table every few hundred milliseconds, which competed with
    // the workers for PostgreSQL; the figure is one count at the end of the run.
    let deadline = started + limit;
    while sender.distinct() < jobs && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = CpuTimes::now(ctx.server.pid()).since(&cpu);
    let finished = count(ctx, &format!("{FINISHED} '{tag}:%'")).await?;
    let seconds = started.elapsed().as_secs_f64();
    // A graceful stop: what is in flight finishes, the rest stays pending.
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let rate = finished as f64 / seconds;
    scenario.at_least("jobs/s, 2 workers", rate, 20_000.0, "jobs/s");
    scenario.info("jobs drained", format!("{finished} of {jobs} in {seconds:.1} s"));
    // The workers run in the bench process: their CPU is the bench column.
    scenario.info(
        "CPU per job (server / PostgreSQL / Redis / bench with the workers)",
        cpu.per_operation(u64::try_from(finished).unwrap_or(0)),
    );
    let done = count(
        ctx,
        &format!("SELECT count(*) AS n FROM jobs WHERE status = 'done' AND dedupe_key LIKE '{tag}:%'"),
    )
    .await?;
    let (distinct, twice) = sender.tally();
    let drained_all = !ctx.config.smoke || done as usize == jobs;
    scenario.check(
        "throughput run: one message per job done, none sent twice",
        done > 0 && distinct == done as usize && twice == 0 && drained_all,
        format!("{done} done, {distinct} distinct messages, {twice} sent twice"),
    );
    Ok(())
}

async fn kill_restart(ctx: &Ctx, scenario: &mut Scenario) -> anyhow::Result<()> {
    let jobs = if ctx.config.smoke { 300 } else { 5_000 };
    let tag = "bench-kill";
    fill(ctx, jobs, tag).await?;
    let sender = Arc::new(NoopSender::default());
    let (stop, stopping) = watch::channel(false);
    // A short lease: the killed worker's claims lapse soon and are taken over.
    let lease = Duration::from_secs(3);
    let doomed = worker(ctx, sender.clone(), "doomed", lease).await?;
    let survivor = worker(ctx, sender.clone(), "survivor", lease).await?;
    let replacement = worker(ctx, sender.clone(), "replacement", lease).await?;
    let doomed = tokio::spawn(doomed.run(stopping.clone(), Duration::from_secs(5)));
    let survivor = tokio::spawn(survivor.run(stopping.clone(), Duration::from_secs(5)));
    let limit = Duration::from_secs(if ctx.config.smoke { 60 } else { 600 });
    wait_finished(ctx, tag, jobs, jobs / 3, limit).await?;
    // The kill: no shutdown path runs, claims stay where they are.
    doomed.abort();
    let killed_at = count(ctx, &format!("{FINISHED} '{tag}:%'")).await?;
    let replacement = tokio::spawn(replacement.run(stopping, Duration::from_secs(5)));
    let finished = wait_finished(ctx, tag, jobs, jobs, limit).await?;
    let _ = stop.send(true);
    let _ = survivor.await;
    let _ = replacement.await;
    let done = count(
        ctx,
        &format!("SELECT count(*) AS n FROM jobs WHERE status = 'done' AND dedupe_key LIKE '{tag}:%'"),
    )
    .await?;
    let (distinct, twice) = sender.tally();
    scenario.info(
        "kill and restart",
        format!("killed a worker at {killed_at} of {jobs} finished"),
    );
    scenario.check(
        "kill and restart: none lost (every job done, every message sent)",
        finished as usize == jobs && done as usize == jobs && distinct == jobs,
        format!("{finished} finished, {done} done, {distinct} distinct messages"),
    );
    // Issue 8 asks for none; the design admits a window (a send the peer accepted
    // whose `sent` record the killed worker never committed is sent again), so
    // this is a figure against that target, not a correctness check.
    scenario.at_most("kill and restart: messages sent twice", twice as f64, 0.0, "");
    scenario.notes.push(format!(
        "{twice} of {jobs} messages were handed to the sender twice after the kill: the killed \
         worker's sends whose `sent` record never committed (domain/src/jobs/deliveries.rs)"
    ));
    Ok(())
}
