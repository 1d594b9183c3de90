//! The hot slot: for each of many intervals, a crowd of clients asks for it at
//! once. Exactly one booking per interval must win, every other client must be
//! told `SLOT_UNAVAILABLE`, and nothing may answer 5xx.

use super::{Ctx, days};
use crate::gql::{BOOK, body};
use crate::load::Recorder;
use crate::report::Scenario;
use crate::seed::SLOT_MINUTES;
use futures_util::StreamExt;
use sea_orm::{ConnectionTrait, Statement};
use std::sync::Arc;
use std::time::Instant;

/// How one request ended.
enum Outcome {
    Won,
    Lost,
    /// A non-200 status.
    Http(u16),
    /// 200 with another error, or no answer.
    Other(String),
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> Scenario {
    let c = &ctx.config;
    let (intervals, crowd) = if c.smoke { (10, 10) } else { (1000, 100) };
    let mut scenario = Scenario::new(&format!(
        "hot slot: {crowd} clients racing for each of {intervals} intervals"
    ));
    let clinic = Arc::new(ctx.clinic.clone());
    let per_day = 24 * 60 / SLOT_MINUTES;
    let recorder = Recorder::default();
    let started = Instant::now();
    // Bounded in time: intervals not started by then are not raced (and reported).
    let limit = c.duration * 4;
    // A few intervals race at a time, each with its whole crowd at once.
    let results: Vec<(usize, Vec<Outcome>)> = futures_util::stream::iter(0..intervals)
        .map(|interval| {
            let (api, clinic, recorder) = (ctx.api.clone(), clinic.clone(), recorder.clone());
            async move {
                if started.elapsed() > limit {
                    return (interval, Vec::new());
                }
                let providers = clinic.providers.len();
                let slot = (interval / providers) as i64;
                let start = clinic.slot(days::HOT + slot / per_day, slot % per_day);
                let racers = (0..crowd).map(|client| {
                    let (api, clinic, recorder) = (api.clone(), clinic.clone(), recorder.clone());
                    tokio::spawn(async move {
                        let request = body(BOOK, clinic.booking(interval, client, start));
                        let sent = Instant::now();
                        let answer = api.post(Some(&clinic.admin), request).await;
                        recorder.record(sent.elapsed());
                        match answer {
                            Ok(a) if a.status != 200 => Outcome::Http(a.status),
                            Ok(a) if a.data().is_ok() => Outcome::Won,
                            Ok(a) if a.code() == Some("SLOT_UNAVAILABLE") => Outcome::Lost,
                            Ok(a) => Outcome::Other(a.body.to_string()),
                            Err(e) => Outcome::Other(e.to_string()),
                        }
                    })
                });
                let outcomes = futures_util::future::join_all(racers)
                    .await
                    .into_iter()
                    .map(|r| r.unwrap_or_else(|e| Outcome::Other(e.to_string())))
                    .collect();
                (interval, outcomes)
            }
        })
        .buffer_unordered(10)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let results: Vec<(usize, Vec<Outcome>)> = results.into_iter().filter(|(_, o)| !o.is_empty()).collect();
    let asked = intervals;
    let intervals = results.len();
    if intervals < asked {
        scenario
            .notes
            .push(format!("bounded at {limit:?}: {intervals} of {asked} intervals raced"));
    }
    let (mut won, mut lost, mut other, mut wrong_winners) = (0, 0, 0, 0);
    let mut statuses: Vec<u16> = Vec::new();
    let mut sample = None;
    for (_, outcomes) in &results {
        let winners = outcomes.iter().filter(|o| matches!(o, Outcome::Won)).count();
        if winners != 1 {
            wrong_winners += 1;
        }
        for outcome in outcomes {
            match outcome {
                Outcome::Won => won += 1,
                Outcome::Lost => lost += 1,
                Outcome::Http(status) => statuses.push(*status),
                Outcome::Other(text) => {
                    other += 1;
                    sample.get_or_insert_with(|| text.chars().take(300).collect::<String>());
                }
            }
        }
    }
    let latency = recorder.percentiles();
    let requests = intervals * crowd;
    scenario.info("intervals raced", format!("{intervals} of {asked}"));
    scenario.at_most("p99 latency", latency.p99_ms, 250.0, "ms");
    scenario.info("p50 latency", format!("{:.2} ms", latency.p50_ms));
    scenario.info(
        "requests/s",
        format!("{:.0} ({requests} in {seconds:.1} s)", requests as f64 / seconds),
    );
    scenario.check(
        &format!("exactly {intervals} bookings, one per interval"),
        won == intervals && wrong_winners == 0,
        format!("{won} won; {wrong_winners} intervals without exactly one winner"),
    );
    scenario.check(
        "every loser answered SLOT_UNAVAILABLE",
        lost == requests - intervals && other == 0,
        format!(
            "{lost} SLOT_UNAVAILABLE, {other} other answers{}",
            sample.map(|s| format!(", e.g. {s}")).unwrap_or_default()
        ),
    );
    statuses.sort_unstable();
    statuses.dedup();
    scenario.check(
        "no 5xx (no non-200 answer at all)",
        statuses.is_empty(),
        format!("non-200 statuses seen: {statuses:?}"),
    );
    // The database agrees: one appointment per raced interval.
    let first = clinic.slot(days::HOT, 0);
    let sql = format!(
        "SELECT count(*) AS n FROM appointments WHERE start_at >= '{}' AND start_at < '{}' AND status IN ({})",
        first.to_rfc3339(),
        (first + chrono::Duration::days(days::BOOK - days::HOT)).to_rfc3339(),
        migration::BLOCKING_STATUSES_SQL
    );
    let stored = match ctx
        .db
        .query_one_raw(Statement::from_string(ctx.db.get_database_backend(), sql))
        .await
    {
        Ok(Some(row)) => row.try_get::<i64>("", "n").unwrap_or(-1),
        _ => -1,
    };
    scenario.check(
        "the database holds one appointment per interval",
        // Only a bounded run leaves intervals unraced; those hold nothing.
        stored == intervals as i64,
        format!("{stored} stored"),
    );
    scenario
}
