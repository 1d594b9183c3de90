//! Start-up: first `/healthz` after exec on SQLite (a fresh file, then an
//! existing one), ready after exec on PostgreSQL (migrated database), idle RSS.

use super::Ctx;
use crate::report::Scenario;
use crate::server::{Launch, Server};
use std::time::Duration;

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> Scenario {
    let mut scenario = Scenario::new("start-up");
    if let Err(e) = measure(ctx, &mut scenario).await {
        scenario.check("every start-up succeeds", false, format!("{e:#}"));
    }
    scenario
}

async fn measure(ctx: &Ctx, scenario: &mut Scenario) -> anyhow::Result<()> {
    let patience = Duration::from_secs(60);
    let dir = ctx.launch.dir.join("startup-sqlite");
    let sqlite = Launch {
        database_url: format!("sqlite://{}/careslot.db?mode=rwc", dir.display()),
        redis_url: None,
        dir: dir.clone(),
        bootstrap_admin: false,
        ..ctx.launch.clone()
    };
    // A fresh file: migrations run while the process already answers /healthz.
    let fresh = Server::start(&sqlite, patience).await?;
    let (fresh_alive, fresh_ready) = (fresh.first_healthz, fresh.ready_after);
    fresh.stop();
    let mut warm = Vec::new();
    let mut warm_ready = Vec::new();
    for _ in 0..5 {
        let server = Server::start(&sqlite, patience).await?;
        warm.push(server.first_healthz);
        warm_ready.push(server.ready_after);
        server.stop();
    }
    warm.sort();
    warm_ready.sort();
    let median = warm[warm.len() / 2];
    scenario.at_most(
        "first /healthz after exec, SQLite (existing file, median of 5)",
        ms(median),
        50.0,
        "ms",
    );
    scenario.info(
        "ready (/readyz) after exec, SQLite (existing file, median of 5)",
        format!("{:.1} ms", ms(warm_ready[warm_ready.len() / 2])),
    );
    scenario.info(
        "first /healthz, then ready, after exec, SQLite (fresh file, migrations)",
        format!("{:.1} ms, {:.1} ms", ms(fresh_alive), ms(fresh_ready)),
    );

    let postgres = Launch {
        dir: ctx.launch.dir.join("startup-postgres"),
        bootstrap_admin: false,
        ..ctx.launch.clone()
    };
    let mut ready = Vec::new();
    let mut rss = 0;
    for _ in 0..3 {
        let server = Server::start(&postgres, patience).await?;
        ready.push(server.ready_after);
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss = server.rss()?;
        server.stop();
    }
    ready.sort();
    scenario.at_most(
        "ready (/readyz) after exec, PostgreSQL + Redis (median of 3)",
        ms(ready[1]),
        500.0,
        "ms",
    );
    scenario.at_most("idle RSS, PostgreSQL + Redis", rss as f64 / 1048576.0, 30.0, "MB");
    scenario.check(
        "every start-up succeeds",
        true,
        format!("{} SQLite, 3 PostgreSQL starts", warm.len() + 1),
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
