//! `careslot-worker`: the background job process. Settings come from the
//! environment like `careslot-api`'s; SIGTERM (or Ctrl-C) stops claiming, lets
//! in-flight sends finish, puts back what did not, and exits.

use anyhow::Context as _;
use domain::auth::PasswordHasher;
use domain::clock::SystemClock;
use domain::events::{MemoryBus, RedisBus, SharedBus};
use domain::secrets::Secrets;
use domain::settings::{LogFormat, Settings};
use domain::{Policy, Services, db};
use std::process::ExitCode;
use std::sync::Arc;

/// How far the worker's bus receiver may fall behind before it skips events.
const BUS_CAPACITY: usize = 4096;

/// The same allocator as `careslot-api` (see there): a claimed batch builds
/// and drops hundreds of rows, messages and requests at once.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("careslot-worker: {e}");
            return ExitCode::from(2);
        }
    };
    workers::install_crypto_provider();
    let telemetry = telemetry::init(
        log_format(settings.log_format),
        "info,sqlx=warn,sea_orm=warn",
        &telemetry::TraceConfig {
            otlp_endpoint: settings.otel_endpoint.clone(),
            service_name: settings
                .otel_service_name
                .clone()
                .unwrap_or_else(|| "careslot-worker".into()),
        },
    );
    let code = match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("careslot-worker: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Export the spans still buffered (the last jobs' runs) before exiting.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}

fn log_format(format: LogFormat) -> telemetry::LogFormat {
    match format {
        LogFormat::Json => telemetry::LogFormat::Json,
        LogFormat::Text => telemetry::LogFormat::Text,
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let secrets = Secrets::resolve(&settings)?;
    let db = db::connect_settings(&settings)
        .await
        .context("cannot open the database (DATABASE_URL)")?;
    if settings.migrate_on_start {
        db::migrate(&db).await.context("migrations failed")?;
    }
    // With Redis, the sweeps' events (HOLD_EXPIRED, NOSHOW) reach every API
    // instance's subscribers, and bookings on any instance wake this worker.
    let bus: SharedBus = match &settings.redis_url {
        Some(url) => Arc::new(
            RedisBus::connect(url, &settings.redis_channel, BUS_CAPACITY)
                .await
                .context("cannot reach Redis (REDIS_URL)")?,
        ),
        None => {
            tracing::warn!("REDIS_URL not set: sweep events stay in this process (fine for one process only)");
            Arc::new(MemoryBus::new(BUS_CAPACITY))
        }
    };
    let services = Services {
        // The worker reads what it is about to change: everything on the primary.
        replica: db.clone(),
        db,
        clock: Arc::new(SystemClock),
        keyring: secrets.keyring,
        tokens: secrets.tokens,
        passwords: PasswordHasher::new().map_err(|e| anyhow::anyhow!("{e}"))?,
        bus,
        policy: Policy::from_settings(&settings),
        // The worker never searches slots.
        slot_cache: Arc::new(domain::scheduling::SlotCache::new(std::time::Duration::ZERO)),
        provider_turns: Arc::default(),
        booking_turns: Arc::default(),
        booking_batches: Arc::default(),
    };
    let metrics_listener = workers::metrics::bind(settings.worker_metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (CARESLOT_WORKER_METRICS_LISTEN)",
                settings.worker_metrics_listen
            )
        })?;
    let metrics_addr = metrics_listener.local_addr()?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut tasks = workers::spawn(services.clone(), &settings, shutdown.clone())?;
    tasks.push(workers::metrics::serve(metrics_listener, shutdown.clone()));
    tasks.push(workers::metrics::spawn_sampler(
        services,
        workers::metrics::SAMPLE_INTERVAL,
        shutdown,
    ));
    tracing::info!("metrics at http://{metrics_addr}/metrics");
    tracing::info!(
        smtp = settings.smtp_url.is_some(),
        twilio = settings.twilio_account_sid.is_some(),
        "careslot-worker running"
    );
    workers::shutdown_signal().await;
    tracing::info!("shutdown signal received: finishing jobs in flight");
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}
