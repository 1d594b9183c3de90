//! `availableSlots` for one provider and one day, on PostgreSQL: saturation
//! throughput (closed loop) and latency at a fixed rate (open loop).

use super::Ctx;
use crate::cpu::CpuTimes;
use crate::gql::{SLOTS, body};
use crate::load::{Verdict, closed_loop, open_loop};
use crate::report::Scenario;
use chrono::Duration;
use serde_json::json;
use std::sync::Arc;

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> Scenario {
    let mut scenario = Scenario::new("availableSlots, one provider, one day (PostgreSQL)");
    let clinic = &ctx.clinic;
    // Every provider and every day of the seeded week, in turn.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..7)
            .flat_map(|day| {
                clinic.providers.iter().map(move |provider| {
                    let from = clinic.week + Duration::days(day);
                    body(
                        SLOTS,
                        json!({ "i": { "providerId": provider, "appointmentTypeId": clinic.kind, "from": from.to_rfc3339(), "to": (from + Duration::days(1)).to_rfc3339() } }),
                    )
                })
            })
            .collect(),
    );
    let request = {
        let (api, token) = (ctx.api.clone(), Arc::<str>::from(clinic.admin.as_str()));
        move |n: u64| {
            let (api, token, bodies) = (api.clone(), token.clone(), bodies.clone());
            async move {
                let body = bodies[(n as usize) % bodies.len()].clone();
                match api.post(Some(&token), body).await {
                    Ok(answer) => match answer.data() {
                        Ok(data) if data["availableSlots"].as_array().is_some_and(|s| !s.is_empty()) => Verdict::Ok,
                        _ => Verdict::Error,
                    },
                    Err(_) => Verdict::Error,
                }
            }
        }
    };
    let c = &ctx.config;
    let cpu = CpuTimes::now(ctx.server.pid());
    let saturation = closed_loop(c.concurrency, c.duration, request.clone()).await;
    let cpu = CpuTimes::now(ctx.server.pid()).since(&cpu);
    let rate = if c.smoke { 50 } else { 3000 };
    // An open loop above the saturation rate only measures an ever-growing queue.
    let open = if saturation.throughput >= rate as f64 {
        Some(open_loop(rate, c.duration, 5_000, request).await)
    } else {
        None
    };
    scenario.at_least("throughput at saturation", saturation.throughput, 6000.0, "req/s");
    scenario.info(
        "p50 / p99 at saturation",
        format!("{:.2} / {:.2} ms", saturation.latency.p50_ms, saturation.latency.p99_ms),
    );
    scenario.info(
        "CPU per request at saturation (server / PostgreSQL / Redis / bench)",
        cpu.per_operation(saturation.requests),
    );
    scenario.open_loop(&format!("{rate} req/s"), open.as_ref(), 10.0, &saturation);
    let (open_requests, open_errors) = open.as_ref().map_or((0, 0), |o| (o.requests, o.errors));
    let errors = saturation.errors + open_errors;
    scenario.check(
        "every answer is a non-empty slot list",
        errors == 0 && saturation.requests > 0,
        format!("{} requests, {errors} wrong", saturation.requests + open_requests),
    );
    scenario.runs = std::iter::once(saturation).chain(open).collect();
    scenario
}
