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
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How far the worker's bus receiver may fall behind before it skips events.
const BUS_CAPACITY: usize = 4096;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("careslot-worker: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(settings.log_format);
    workers::install_crypto_provider();
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("careslot-worker: {e:#}");
            ExitCode::FAILURE
        }
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
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let tasks = workers::spawn(services, &settings, shutdown)?;
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

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry.with(tracing_subscriber::fmt::layer().json()).try_init(),
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging was already set up: {e}");
    }
}
