//! `bookAppointment` at low contention: every request asks for an interval
//! nobody else asks for. Saturation throughput, latency at a fixed rate, and
//! afterwards the database must hold no two overlapping blocking appointments.

use super::{Ctx, days};
use crate::cpu::CpuTimes;
use crate::gql::{BOOK, body};
use crate::load::{Verdict, closed_loop, open_loop};
use crate::report::Scenario;
use crate::seed::SLOT_MINUTES;
use sea_orm::{ConnectionTrait, Statement};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Overlapping pairs of time-occupying appointments, per provider: an interval
/// that starts before the latest end of those started before it.
pub async fn overlaps(db: &sea_orm::DatabaseConnection) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT count(*) AS n FROM ( \
           SELECT start_at, max(end_at) OVER (PARTITION BY provider_id ORDER BY start_at, id \
             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS latest_end \
           FROM appointments WHERE status IN ({})) t \
         WHERE latest_end > start_at",
        migration::BLOCKING_STATUSES_SQL
    );
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    Ok(row.try_get::<i64>("", "n")?)
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> Scenario {
    let mut scenario = Scenario::new("bookAppointment, low contention (distinct intervals)");
    let clinic = Arc::new(ctx.clinic.clone());
    let per_day = 24 * 60 / SLOT_MINUTES;
    // One counter across both runs: no interval is ever asked for twice.
    let next = Arc::new(AtomicU64::new(0));
    let request = {
        let (api, clinic, next) = (ctx.api.clone(), clinic.clone(), next.clone());
        move |_: u64| {
            let (api, clinic) = (api.clone(), clinic.clone());
            let n = next.fetch_add(1, Ordering::Relaxed) as usize;
            async move {
                let providers = clinic.providers.len();
                let slot = (n / providers) as i64;
                let start = clinic.slot(days::BOOK + slot / per_day, slot % per_day);
                let variables = clinic.booking(n, n, start);
                match api.post(Some(&clinic.admin), body(BOOK, variables)).await {
                    Ok(answer) if answer.data().is_ok() => Verdict::Ok,
                    _ => Verdict::Error,
                }
            }
        }
    };
    let c = &ctx.config;
    let cpu = CpuTimes::now(ctx.server.pid());
    let saturation = closed_loop(c.concurrency, c.duration, request.clone()).await;
    let cpu = CpuTimes::now(ctx.server.pid()).since(&cpu);
    let rate = if c.smoke { 50 } else { 2000 };
    // An open loop above the saturation rate only measures an ever-growing queue.
    let open = if saturation.throughput >= rate as f64 {
        Some(open_loop(rate, c.duration, 5_000, request).await)
    } else {
        None
    };
    scenario.at_least("bookings/s at saturation", saturation.throughput, 4000.0, "/s");
    scenario.info(
        "p50 / p99 at saturation",
        format!("{:.2} / {:.2} ms", saturation.latency.p50_ms, saturation.latency.p99_ms),
    );
    scenario.info(
        "CPU per booking at saturation (server / PostgreSQL / Redis / bench)",
        cpu.per_operation(saturation.requests),
    );
    scenario.open_loop(&format!("{rate}/s"), open.as_ref(), 25.0, &saturation);
    let (open_requests, open_errors) = open.as_ref().map_or((0, 0), |o| (o.requests, o.errors));
    let errors = saturation.errors + open_errors;
    scenario.check(
        "every distinct-interval booking succeeds",
        errors == 0,
        format!("{} requests, {errors} failed", saturation.requests + open_requests),
    );
    match overlaps(&ctx.db).await {
        Ok(n) => scenario.check(
            "zero overlapping rows after the run",
            n == 0,
            format!("{n} overlapping"),
        ),
        Err(e) => scenario.check(
            "zero overlapping rows after the run",
            false,
            format!("query failed: {e:#}"),
        ),
    }
    scenario.runs = std::iter::once(saturation).chain(open).collect();
    scenario
}
