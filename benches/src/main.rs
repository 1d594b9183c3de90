//! `careslot-bench`: the benchmark suite of issue 8. It starts the release
//! `careslot-api` on a fresh PostgreSQL database (+ Redis), seeds a clinic
//! through the public GraphQL API, runs every scenario for a bounded time,
//! checks that each stayed correct, and writes `report.json` and `report.md`.
//! See benches/README.md.

mod config;
mod cpu;
mod gql;
mod load;
mod report;
mod scenarios;
mod seed;
mod server;

use anyhow::Context as _;
use config::{Config, USAGE};
use report::{Machine, Report, Scenario};
use scenarios::Ctx;
use sea_orm::{ConnectionTrait, Database};
use server::{Launch, Server};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// The allocator of `careslot-worker`: the queue scenario runs its workers
/// in this process, and they should cost what they cost there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match Config::parse(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("careslot-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    if config.pin {
        // Before the runtime starts its threads, so they all inherit the mask:
        // the load generator on core 1, the server on core 0.
        let pid = std::process::id().to_string();
        let pinned = Command::new("taskset").args(["-a", "-c", "-p", "1", &pid]).output();
        if !pinned.is_ok_and(|o| o.status.success()) {
            eprintln!("careslot-bench: taskset failed: run with --no-pin or install util-linux");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("careslot-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("careslot-bench: a correctness check failed (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("careslot-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A fresh PostgreSQL database for one run.
struct BenchDatabase {
    server: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create(server: &str) -> anyhow::Result<Self> {
        let name = format!("careslot_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(server)
            .await
            .with_context(|| format!("PostgreSQL at {server}"))?;
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
        let _ = admin.close().await;
        let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
        Ok(Self {
            url: format!("{base}/{name}"),
            server: server.to_owned(),
            name,
        })
    }

    async fn drop_now(&self) -> anyhow::Result<()> {
        let admin = Database::connect(&self.server).await?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await?;
        let _ = admin.close().await;
        Ok(())
    }
}

fn shell(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or_else(String::new, |kb| format!("{:.1} GB RAM", kb as f64 / 1048576.0));
    Machine {
        cpu,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        memory,
        kernel: shell("uname", &["-r"]),
        load_at_start: load_average(),
        load_at_end: String::new(),
        busy_before_percent: cpu::machine_busy(std::time::Duration::from_secs(1)).map(|b| b * 100.0),
    }
}

async fn run(config: Config) -> anyhow::Result<bool> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let mut machine = machine();
    // Counted over the whole machine: the pinned bench itself sees one core.
    machine.cpus = shell("nproc", &["--all"]).parse().unwrap_or(machine.cpus);
    let bin = server::binary(&config.bin_dir, "careslot-api")?;
    let database = BenchDatabase::create(&config.postgres).await?;
    let dir = std::env::temp_dir().join(format!("careslot-bench-{}", uuid::Uuid::new_v4().simple()));
    let launch = Launch {
        bin,
        database_url: database.url.clone(),
        redis_url: Some(config.redis.clone()),
        channel: format!("careslot:bench:{}", uuid::Uuid::new_v4().simple()),
        dir: dir.clone(),
        cpu: config.pin.then_some(0),
        bootstrap_admin: true,
    };
    let outcome = scenarios_on(&config, &launch, &database).await;
    if !config.keep_db
        && let Err(e) = database.drop_now().await
    {
        eprintln!("careslot-bench: could not drop {}: {e:#}", database.name);
    }
    let scenarios = outcome?;
    let _ = std::fs::remove_dir_all(&dir);
    machine.load_at_end = load_average();
    let report = Report {
        mode: if config.smoke { "smoke".into() } else { "full".into() },
        commit: shell("git", &["describe", "--always", "--dirty"]),
        started_at,
        seconds: started.elapsed().as_secs_f64(),
        pinned: config.pin,
        machine,
        scenarios,
    };
    std::fs::create_dir_all(&config.out).with_context(|| format!("creating {}", config.out.display()))?;
    std::fs::write(config.out.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    let markdown = report.markdown();
    std::fs::write(config.out.join("report.md"), &markdown)?;
    println!("{markdown}");
    println!("report: {}", config.out.join("report.json").display());
    Ok(report.scenarios.iter().all(Scenario::correct))
}

async fn scenarios_on(config: &Config, launch: &Launch, database: &BenchDatabase) -> anyhow::Result<Vec<Scenario>> {
    let server = Server::start(launch, Duration::from_secs(120)).await?;
    let api = gql::Api::new(&server.base);
    let size = if config.smoke {
        seed::Size {
            providers: 3,
            patients: 10,
            per_provider_day: 2,
        }
    } else {
        seed::Size {
            providers: 50,
            patients: 200,
            per_provider_day: 8,
        }
    };
    let seeding = Instant::now();
    let clinic = seed::seed(&api, size).await.context("seeding the clinic")?;
    eprintln!(
        "seeded {} providers, {} patients, {} appointments in {:.1} s",
        clinic.providers.len(),
        clinic.patients.len(),
        clinic.booked,
        seeding.elapsed().as_secs_f64()
    );
    let db = Database::connect(&database.url).await?;
    let ctx = Ctx {
        config: config.clone(),
        server,
        launch: launch.clone(),
        api,
        clinic,
        db,
    };
    let mut scenarios = Vec::new();
    for name in config::SCENARIOS {
        if !config.runs(name) {
            continue;
        }
        // Each scenario starts with the WAL budget fresh: without this, the
        // WAL of the one before decides whether a checkpoint (seconds of
        // writes, then a full-page image per page first touched) lands
        // inside this one's measured window. A scenario that writes enough
        // WAL of its own still pays for its checkpoints.
        if let Err(e) = ctx.db.execute_unprepared("CHECKPOINT").await {
            eprintln!("careslot-bench: CHECKPOINT before {name} failed: {e}");
        }
        eprintln!("scenario {name} (load {})", load_average());
        let at = Instant::now();
        match *name {
            "startup" => scenarios.push(scenarios::startup::run(&ctx).await),
            "slots" => scenarios.push(scenarios::slots::run(&ctx).await),
            "book" => scenarios.push(scenarios::book::run(&ctx).await),
            "hot" => scenarios.push(scenarios::hot::run(&ctx).await),
            "fanout" => scenarios.extend(scenarios::fanout::run(&ctx).await),
            "queue" => scenarios.push(scenarios::queue::run(&ctx).await),
            _ => {}
        }
        eprintln!("scenario {name} took {:.1} s", at.elapsed().as_secs_f64());
    }
    let _ = ctx.db.close().await;
    ctx.server.stop();
    Ok(scenarios)
}
