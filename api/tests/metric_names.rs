//! The Grafana dashboard and the Prometheus alert rules under deploy/ query
//! only metrics the binaries really export. A real `careslot-api` and two real
//! `careslot-worker`s (PostgreSQL, Redis, an SMTP peer) get traffic that
//! touches every metric (queries, a forbidden one, a booking and a conflict,
//! websockets with a subscription and a refused token, an unreadable bus
//! message, rate limiting, a sent email, a failed and dead-lettered one); their
//! `/metrics` are scraped and every `careslot_*` name in the two files must be
//! among the scraped samples or `# TYPE` lines. So a dashboard querying
//! `_bucket` of a metric exported as a summary fails here too.

mod common;

use careslot_tests::peers::{SmtpServer, refusing_smtp};
use careslot_tests::postgres::TestDatabase;
use common::{Server, WsClient, book, free_port, set_up};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Metrics only a failure of Redis or an overloaded subscriber registers,
/// which this test does not stage. For these the name must at least be the
/// one the code registers (a string literal in the sources), so a typo in
/// the dashboard still fails.
const FAILURE_ONLY: &[&str] = &[
    "careslot_bus_publish_failures_total",
    "careslot_subscription_events_dropped_total",
];

fn deploy(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Every `careslot_…` identifier in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(found) = text[i..].find("careslot_") {
        let start = i + found;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// Sample names and `# TYPE` names of a Prometheus text exposition.
fn exported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        })
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The worker binary beside the API's (`cargo test --workspace` builds both).
fn worker_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_careslot-api")).with_file_name("careslot-worker");
    assert!(
        path.is_file(),
        "{} is missing: run the workspace's tests (cargo test --workspace)",
        path.display()
    );
    path
}

struct Worker {
    child: Child,
    metrics: String,
}

impl Worker {
    fn start(env: &[(&str, &str)], smtp: &str) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new(worker_binary())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .env("CARESLOT_SMTP_URL", smtp)
            .env("CARESLOT_WORKER_METRICS_LISTEN", &listen)
            .env("CARESLOT_WORKER_POLL_SECONDS", "1")
            .env("CARESLOT_JOB_MAX_ATTEMPTS", "2")
            .env("CARESLOT_JOB_BACKOFF_BASE_SECONDS", "1")
            .env("CARESLOT_JOB_BACKOFF_MAX_SECONDS", "1")
            .env("CARESLOT_SEND_TIMEOUT_SECONDS", "5")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("careslot-worker starts");
        Self {
            child,
            metrics: format!("http://{listen}/metrics"),
        }
    }

    /// The worker's exposition once it names all of `wanted` (some are
    /// sampled periodically), or the last one seen after 45 s.
    async fn scrape_until(&self, wanted: &[&str]) -> String {
        scrape_until(&self.metrics, wanted).await
    }
}

/// `url`'s exposition once it names all of `wanted`, or the last one seen
/// (empty when it never answered) after 45 s.
async fn scrape_until(url: &str, wanted: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(response) = careslot_tests::get(url).await
            && let Ok(text) = response.text().await
        {
            if wanted.iter().all(|name| text.contains(name)) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alert_rules_use_only_exported_metrics() {
    let used_by_dashboard = names_in(&deploy("grafana/dashboards/careslot.json"));
    let used_by_rules = names_in(&deploy("prometheus/alerts.yml"));
    assert!(used_by_dashboard.len() > 10 && used_by_rules.len() > 5);

    let database = TestDatabase::create().await;
    let channel = common::fresh_channel();
    let env = common::shared_env(&database.url, &channel);
    let dir = tempfile::tempdir().expect("tmp");
    let mut api_env = env.clone();
    api_env.extend([
        ("CARESLOT_WORKER_EMBEDDED", "false"),
        // The per-user limit is the one this test trips (RATE_LIMITED is counted).
        ("CARESLOT_RATE_LIMIT_USER_PER_MINUTE", "60"),
        ("CARESLOT_RATE_LIMIT_IP_PER_MINUTE", "1000000"),
    ]);
    let api = Server::start(dir.path(), &api_env).await;
    let smtp = SmtpServer::start();
    let sending = Worker::start(&env, &smtp.peer.smtp_url());

    // Queries, mutations, a refused operation, a subscription, a booking and a conflict.
    let s = set_up(&api).await;
    let forbidden = api
        .gql(None, "{ auditEvents(first: 1) { edges { cursor } } }", json!({}))
        .await;
    assert!(forbidden.get("errors").is_some(), "{forbidden}");
    let mut desk = WsClient::initialized(&api.ws_url(), "graphql-transport-ws", &s.admin).await;
    desk.subscribe(
        "graphql-transport-ws",
        "desk",
        "subscription($l: UUID!) { appointmentsChanged(locationId: $l) { kind } }",
        json!({ "l": s.location }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    book(&api, &s).await;
    assert_eq!(desk.next().await["type"], "next");
    let conflict = api
        .gql(
            Some(&s.admin),
            "mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id } }",
            json!({ "i": { "providerId": s.provider, "patientId": s.patient, "appointmentTypeId": s.kind, "start": s.slot } }),
        )
        .await;
    assert_eq!(
        conflict["errors"][0]["extensions"]["code"], "SLOT_UNAVAILABLE",
        "{conflict}"
    );
    // A websocket with a bad token is closed by the server.
    let mut refused = WsClient::connect(&api.ws_url(), "graphql-transport-ws").await;
    refused
        .send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer nope" } }))
        .await;
    let _ = refused.next().await;
    // An unreadable message on the bus is dropped, and counted.
    let published = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "PUBLISH", &channel, "not json"])
        .output()
        .expect("redis-cli is required for this test");
    assert!(published.status.success());

    // The confirmation is sent by the first worker; then a second one, whose
    // SMTP server refuses, fails a booking's email twice and dead-letters it.
    let first = sending
        .scrape_until(&[
            "careslot_jobs_completed_total",
            "careslot_job_latency_seconds",
            "careslot_job_run_duration_seconds",
        ])
        .await;
    drop(sending);
    let refusing = refusing_smtp(451);
    let failing = Worker::start(&env, &refusing.smtp_url());
    let (from, to) = common::tomorrow();
    let slots = api
        .data(
            &s.admin,
            "query($i: AvailableSlotsInput!) { availableSlots(input: $i) { start } }",
            json!({ "i": { "providerId": s.other_provider, "appointmentTypeId": s.kind, "from": from, "to": to } }),
        )
        .await;
    let other = common::Setup {
        provider: s.other_provider.clone(),
        slot: slots["availableSlots"][0]["start"].as_str().expect("slot").to_owned(),
        admin: s.admin.clone(),
        location: s.location.clone(),
        other_provider: s.provider.clone(),
        kind: s.kind.clone(),
        patient: s.patient.clone(),
    };
    book(&api, &other).await;
    let second = failing
        .scrape_until(&[
            "careslot_jobs_failed_total",
            "careslot_jobs_dead_lettered_total",
            "careslot_jobs_queue_depth",
            "careslot_worker_up",
        ])
        .await;

    // Rate limiting, last: 60 per minute for the admin.
    let mut limited = false;
    for _ in 0..100 {
        let answer = api.gql(Some(&s.admin), "{ __typename }", json!({})).await;
        if answer["errors"][0]["extensions"]["code"] == "RATE_LIMITED" {
            limited = true;
            break;
        }
    }
    assert!(limited, "no request was rate limited");

    let api_metrics = scrape_until(
        &format!("{}/metrics", api.base),
        &["careslot_http_requests_total", "careslot_db_pool_connections"],
    )
    .await;
    let mut available = exported(&api_metrics);
    available.extend(exported(&first));
    available.extend(exported(&second));

    let sources = ["api/src", "schema/src", "domain/src", "workers/src"]
        .iter()
        .map(|dir| read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir)))
        .collect::<String>();
    let mut missing = Vec::new();
    for (file, names) in [
        ("deploy/grafana/dashboards/careslot.json", &used_by_dashboard),
        ("deploy/prometheus/alerts.yml", &used_by_rules),
    ] {
        for name in names {
            let registered_in_code = FAILURE_ONLY.contains(&name.as_str()) && sources.contains(&format!("\"{name}\""));
            if !available.contains(name) && !registered_in_code {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics used but not exported:\n  {}\nworker answered /metrics: {}\nexported: {available:?}",
        missing.join("\n  "),
        !first.is_empty() || !second.is_empty()
    );
    drop(failing);
    let (status, _) = api.terminate();
    assert!(status.success());
}

/// The concatenated text of every `.rs` file under `dir`.
fn read_sources(dir: &Path) -> String {
    let mut text = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return text;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&read_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    text
}
