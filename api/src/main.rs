//! `careslot-api`: the GraphQL server.
//!
//! - `careslot-api` (or `careslot-api serve`): run the server.
//! - `careslot-api migrate`: apply migrations and exit (takes PostgreSQL's
//!   migration lock, so replicas and jobs never race).

use anyhow::Context as _;
use api::app::{App, AppOptions};
use domain::settings::Settings;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: a booking allocates and frees
/// thousands of small objects across the HTTP, GraphQL, SQL and Redis layers,
/// and glibc's malloc took about a quarter of the server's CPU under load
/// (BENCHMARKS.md, session 8).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: careslot-api [serve | migrate | verify-audit | rotate-phi-keys]\n\n\
  serve            run the server (the default)\n\
  migrate          apply migrations and exit\n\
  verify-audit     check the audit log's hash chain; exit 1 when it is broken\n\
  rotate-phi-keys  re-encrypt PHI written with older keys under the newest one\n\n\
Settings come from the environment (see README.md).";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("careslot-api: {e}");
            return ExitCode::from(2);
        }
    };
    // One rustls provider (ring) for the process, before any TLS client is built.
    workers::install_crypto_provider();
    let telemetry = api::telemetry::init(&settings);
    let result = match command.as_str() {
        "serve" => serve(settings).await,
        "migrate" => migrate(settings).await,
        "verify-audit" => api::commands::verify_audit(settings).await,
        "rotate-phi-keys" => api::commands::rotate_phi_keys(settings).await,
        other => {
            eprintln!("careslot-api: unknown command {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("careslot-api: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Export the spans still buffered before exiting.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = domain::db::connect_settings(&settings).await?;
    domain::db::migrate(&db).await.context("migrations failed")?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listen = settings.listen;
    // Bound first: the process answers /healthz while it builds the rest.
    let listening = api::startup::Listening::bind(listen)
        .with_context(|| format!("cannot listen on {listen} (CARESLOT_LISTEN)"))?;
    let (app, listener) = listening
        .answer_while(App::build(settings, AppOptions::default()))
        .await
        .with_context(|| format!("cannot listen on {listen} (CARESLOT_LISTEN)"))?;
    let app = app?;
    for note in &app.notes {
        tracing::info!("{note}");
    }
    if !app.settings.defaulted.is_empty() {
        tracing::info!(defaults = ?app.settings.defaulted, "settings left at their defaults");
    }
    let router = api::http::router(app.clone());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut background = if app.settings.worker_embedded {
        tracing::info!("job worker running in this process (CARESLOT_WORKER_EMBEDDED)");
        workers::spawn(app.services.clone(), &app.settings, stopping.clone())?
    } else {
        Vec::new()
    };
    background.push(workers::metrics::spawn_sampler(
        app.services.clone(),
        workers::metrics::SAMPLE_INTERVAL,
        stopping,
    ));
    tracing::info!("Careslot listening on http://{listen}");
    if app.settings.mode == domain::settings::Mode::Development {
        tracing::info!("GraphiQL at http://{listen}/graphql");
    }
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        workers::shutdown_signal().await;
        tracing::info!("shutdown signal received: draining");
        // The embedded worker stops claiming and finishes what is in flight.
        let _ = stop.send(true);
    })
    .await?;
    for task in background {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}
