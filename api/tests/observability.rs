//! Observability end to end, with real parts only: the `careslot-api` binary
//! exports spans over OTLP/HTTP to a receiver running in this test (decoding the
//! real protobuf wire format), logs JSON lines at debug level to a file, and
//! serves `/metrics`; the worker runs in this process with the real exporter
//! (as `careslot-worker`) and serves its own `/metrics`. One booking, carrying
//! a `traceparent`, must come out as one connected trace across API and
//! worker, with the trace id in the log and no patient data anywhere.

mod common;
use axum::body::Bytes;
use axum::extract::State;
use common::{Server, command, free_port, set_up};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The patient whose data must not leak.
const NAME: &str = "Quintessa Phiwatch";
const EMAIL: &str = "quintessa.phiwatch@example.test";
const PHONE: &str = "+15550172233";
const BIRTH_DATE: &str = "1977-03-14";

/// The caller's trace (W3C ids: 16 and 8 bytes in hex).
const TRACE_ID: &str = "5e1d0c0ffee0ddba11ca7f00d5eed123";
const PARENT_SPAN: &str = "00f067aa0ba902b7";
/// The trace of a websocket client.
const WS_TRACE: &str = "feedfacecafebeef0123456789abcdef";

/// One span as the receiver decoded it.
#[derive(Clone, Debug)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// Every attribute as `key=value` (value in its protobuf debug form).
    attributes: Vec<String>,
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /v1/traces`: an OTLP/HTTP receiver (protobuf bodies).
async fn receive(State(spans): State<Spans>, body: Bytes) -> axum::http::StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return axum::http::StatusCode::BAD_REQUEST;
    };
    let mut received = spans.lock().expect("lock");
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .map(|kv| format!("{:?}", kv.value))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| format!("{}={:?}", kv.key, kv.value))
                        .chain(
                            span.events
                                .iter()
                                .flat_map(|e| e.attributes.iter().map(|kv| format!("{}={:?}", kv.key, kv.value))),
                        )
                        .collect(),
                });
            }
        }
    }
    axum::http::StatusCode::OK
}

async fn start_receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let router = axum::Router::new()
        .route("/v1/traces", axum::routing::post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, spans)
}

/// Starts the binary with stdout and stderr going to a file (at debug level
/// the log outgrows a pipe nobody reads).
async fn start_logging_to(dir: &std::path::Path, log: &std::path::Path, env: &[(&str, &str)]) -> Server {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut env = env.to_vec();
    env.extend([
        ("CARESLOT_LISTEN", listen.as_str()),
        ("CARESLOT_BOOTSTRAP_ADMIN_EMAIL", "admin@clinic.test"),
        ("CARESLOT_BOOTSTRAP_ADMIN_PASSWORD", "admin password 1234"),
    ]);
    let file = std::fs::File::create(log).expect("log file");
    let child = command(dir, &env)
        .stdout(Stdio::from(file.try_clone().expect("clone")))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("binary starts");
    let server = Server {
        child: Some(child),
        base: format!("http://{listen}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        // /healthz answers while the server still starts; /readyz once it serves.
        if let Ok(response) = careslot_tests::get(&format!("{}/readyz", server.base)).await
            && response.status().is_success()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("careslot-api was not ready (/readyz) within 60 s");
}

/// The value of the series `name{labels}` (labels as written by the exporter).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(base: &str) -> String {
    careslot_tests::get(&format!("{base}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_is_one_trace_across_api_and_worker_with_metrics_and_no_phi_in_logs() {
    let database = careslot_tests::postgres::TestDatabase::create().await;
    let (otlp, spans) = start_receiver().await;
    let dir = tempfile::tempdir().expect("tmp");
    let log_path = dir.path().join("api.log");
    let channel = common::fresh_channel();
    let mut shared = common::shared_env(&database.url, &channel);
    shared.push(("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()));
    let mut env = shared.clone();
    env.extend([
        ("RUST_LOG", "debug"),
        ("CARESLOT_LOG_FORMAT", "json"),
        ("CARESLOT_WORKER_EMBEDDED", "false"),
    ]);
    let server = start_logging_to(dir.path(), &log_path, &env).await;
    let setup = set_up(&server).await;

    // A patient with every PHI field, created, booked and read at debug level.
    let patient = server
        .data(
            &setup.admin,
            "mutation($i: CreatePatientInput!) { createPatient(input: $i) { id } }",
            json!({ "i": { "name": NAME, "birthDate": BIRTH_DATE, "email": EMAIL, "phone": PHONE } }),
        )
        .await["createPatient"]["id"]
        .as_str()
        .expect("patient id")
        .to_owned();
    let book = |traceparent: Option<String>| {
        let mut request = careslot_tests::http()
            .post(format!("{}/graphql", server.base))
            .bearer_auth(&setup.admin)
            .json(&json!({
                "query": "mutation BookAppointment($i: BookAppointmentInput!) { bookAppointment(input: $i) { id } }",
                "operationName": "BookAppointment",
                "variables": { "i": { "providerId": setup.provider, "patientId": patient, "appointmentTypeId": setup.kind, "start": setup.slot } },
            }));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        async move {
            request
                .send()
                .await
                .expect("request")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let booked = book(Some(format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))).await;
    assert!(booked["data"]["bookAppointment"]["id"].is_string(), "{booked}");
    let conflict = book(None).await;
    assert_eq!(
        conflict["errors"][0]["extensions"]["code"], "SLOT_UNAVAILABLE",
        "{conflict}"
    );
    let read = server
        .data(
            &setup.admin,
            "query($id: UUID!) { patient(id: $id) { name email phone birthDate } }",
            json!({ "id": patient }),
        )
        .await;
    assert_eq!(read["patient"]["phone"], PHONE, "the read really decrypted the patient");

    // An INTERNAL error names its trace, for support to find the logged cause.
    let broken = server
        .data(
            &setup.admin,
            "mutation { createPatient(input: { name: \"Broken Record\", birthDate: \"1960-01-01\" }) { id } }",
            json!({}),
        )
        .await["createPatient"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    {
        use sea_orm::ConnectionTrait as _;
        let db = domain::db::connect(&database.url, 1).await.expect("connect");
        db.execute_unprepared(&format!(
            "UPDATE patients SET name_enc = decode(repeat('01', 40), 'hex') WHERE id = '{broken}'"
        ))
        .await
        .expect("corrupt the ciphertext");
    }
    const INTERNAL_TRACE: &str = "0badc0de0badc0de0badc0de0badc0de";
    let internal: Value = careslot_tests::http()
        .post(format!("{}/graphql", server.base))
        .bearer_auth(&setup.admin)
        .header("traceparent", format!("00-{INTERNAL_TRACE}-{PARENT_SPAN}-01"))
        .json(&json!({ "query": "query($id: UUID!) { patient(id: $id) { name } }", "variables": { "id": broken } }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(internal["errors"][0]["extensions"]["code"], "INTERNAL", "{internal}");
    assert_eq!(
        internal["errors"][0]["extensions"]["traceId"], INTERNAL_TRACE,
        "{internal}"
    );

    // A websocket session continues the trace of its upgrade request.
    {
        use futures_util::{SinkExt as _, StreamExt as _};
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut request = server.ws_url().into_client_request().expect("request");
        let headers = request.headers_mut();
        headers.insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().expect("header"),
        );
        headers.insert(
            "traceparent",
            format!("00-{WS_TRACE}-{PARENT_SPAN}-01").parse().expect("header"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket");
        let init =
            json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", setup.admin) } });
        socket.send(Message::text(init.to_string())).await.expect("send");
        let ack = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer")
            .expect("a frame")
            .expect("a message");
        assert!(ack.to_text().unwrap_or_default().contains("connection_ack"), "{ack:?}");
        let _ = socket.close(None).await;
    }

    // Metrics of the API after a booking and a conflicting one.
    let metrics = scrape(&server.base).await;
    let at_least = |series: &str, min: f64| {
        let value = sample(&metrics, series).unwrap_or_else(|| panic!("no series {series} in\n{metrics}"));
        assert!(value >= min, "{series} = {value}, expected at least {min}");
    };
    at_least("careslot_bookings_total{outcome=\"booked\"}", 1.0);
    at_least("careslot_bookings_total{outcome=\"conflict\"}", 1.0);
    at_least(
        "careslot_graphql_operations_total{operation=\"BookAppointment\",type=\"mutation\",outcome=\"ok\"}",
        1.0,
    );
    at_least(
        "careslot_graphql_operations_total{operation=\"BookAppointment\",type=\"mutation\",outcome=\"SLOT_UNAVAILABLE\"}",
        1.0,
    );
    at_least(
        "careslot_graphql_operation_duration_seconds_count{operation=\"BookAppointment\",type=\"mutation\",outcome=\"ok\"}",
        1.0,
    );
    at_least(
        "careslot_http_requests_total{method=\"POST\",route=\"/graphql\",status=\"200\"}",
        5.0,
    );
    at_least(
        "careslot_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"}",
        1.0,
    );
    at_least(
        "careslot_http_request_duration_seconds_bucket{method=\"POST\",route=\"/graphql\",status=\"200\",le=\"+Inf\"}",
        5.0,
    );
    at_least("careslot_db_pool_max_connections", 16.0);
    at_least("careslot_db_pool_connections{state=\"idle\"}", 0.0);
    at_least("careslot_db_pool_connections{state=\"in_use\"}", 0.0);
    for state in ["pending", "running", "dead"] {
        at_least(&format!("careslot_jobs_queue_depth{{state=\"{state}\"}}"), 0.0);
    }
    let raw_uri = careslot_tests::get(&format!("{}/no/such/{}", server.base, uuid::Uuid::new_v4()))
        .await
        .expect("request");
    assert_eq!(raw_uri.status(), 404);
    let metrics_after = scrape(&server.base).await;
    assert!(
        metrics_after.contains("route=\"unmatched\"") && !metrics_after.contains("/no/such/"),
        "unknown paths share one label"
    );

    // The worker, in this process with the real exporter, runs the confirmation.
    let guard = telemetry::init(
        telemetry::LogFormat::Text,
        "warn",
        &telemetry::TraceConfig {
            otlp_endpoint: Some(otlp.clone()),
            service_name: "careslot-worker".into(),
        },
    );
    let data_dir = dir.path().join("worker-data");
    let data_dir = data_dir.display().to_string();
    let mut worker_env = shared.clone();
    worker_env.extend([
        ("CARESLOT_DATA_DIR", data_dir.as_str()),
        ("CARESLOT_MIGRATE_ON_START", "false"),
    ]);
    let settings = domain::settings::Settings::for_tests(&worker_env).expect("settings");
    let app = api::app::App::build(settings.clone(), api::app::AppOptions::default())
        .await
        .expect("services");
    let worker = workers::Worker::new(
        app.services.clone(),
        workers::Senders::from_settings(&settings).expect("senders"),
        workers::WorkerConfig::from_settings(&settings),
    );
    let ran = worker.drain().await.expect("worker drains");
    assert!(ran >= 1, "the confirmation job ran");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let worker_metrics = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let serving = workers::metrics::serve(listener, stopping);
    let healthz = careslot_tests::get(&format!("{worker_metrics}/healthz"))
        .await
        .expect("healthz");
    assert!(healthz.status().is_success());
    let metrics = scrape(&worker_metrics).await;
    for series in [
        "careslot_worker_up",
        "careslot_jobs_completed_total{kind=\"confirmation\"}",
        "careslot_job_run_duration_seconds_count{kind=\"confirmation\"}",
        "careslot_job_latency_seconds_count{kind=\"confirmation\"}",
    ] {
        let value = sample(&metrics, series).unwrap_or_else(|| panic!("no series {series} in\n{metrics}"));
        assert!(value >= 1.0, "{series} = {value}");
    }
    let _ = stop.send(true);
    let _ = serving.await;
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .expect("flush");

    // Stopping the API flushes its spans.
    let (status, _) = server.terminate();
    assert!(status.success(), "careslot-api exits cleanly: {status:?}");
    let log = std::fs::read_to_string(&log_path).expect("log");

    let deadline = Instant::now() + Duration::from_secs(20);
    let trace: Vec<ReceivedSpan> = loop {
        let trace: Vec<ReceivedSpan> = spans
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .cloned()
            .collect();
        let has = |name: &str| trace.iter().any(|s| s.name.starts_with(name));
        if (has("POST /graphql") && has("job confirmation")) || Instant::now() > deadline {
            break trace;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ws: Vec<String> = spans
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.trace_id == WS_TRACE)
        .map(|s| s.name.clone())
        .collect();
    for name in ["GET /graphql/ws", "graphql.ws.session"] {
        assert!(
            ws.iter().any(|n| n == name),
            "{name} in the websocket client's trace: {ws:?}"
        );
    }
    let names: Vec<(&str, &str)> = trace.iter().map(|s| (s.service.as_str(), s.name.as_str())).collect();
    for (service, name) in [
        ("careslot-api", "POST /graphql"),
        ("careslot-api", "graphql"),
        ("careslot-api", "booking.book"),
        ("careslot-api", "redis.publish"),
        ("careslot-worker", "job confirmation"),
        ("careslot-worker", "email.send"),
    ] {
        assert!(
            names.iter().any(|(s, n)| s.contains(service) && *n == name),
            "span {name} of {service} in the trace: {names:#?}"
        );
    }
    let operation = trace.iter().find(|s| s.name == "graphql").expect("graphql span");
    for expected in [
        "graphql.operation.name",
        "BookAppointment",
        "graphql.operation.type",
        "mutation",
    ] {
        assert!(
            operation.attributes.iter().any(|a| a.contains(expected)),
            "{expected} in {:?}",
            operation.attributes
        );
    }
    // Connected: every span's parent is in the trace, or is the caller's span.
    let ids: HashSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    for span in &trace {
        assert!(
            span.parent_span_id == PARENT_SPAN || ids.contains(span.parent_span_id.as_str()),
            "{} hangs off an unknown parent {}: {names:#?}",
            span.name,
            span.parent_span_id
        );
    }
    let job = trace.iter().find(|s| s.name == "job confirmation").expect("job span");
    let job_parent = trace
        .iter()
        .find(|s| s.span_id == job.parent_span_id)
        .expect("the job's parent was received");
    assert!(
        job_parent.service.contains("careslot-api"),
        "the job continues the API's trace"
    );

    // No patient data in any span attribute, of this trace or any other.
    for span in spans.lock().expect("lock").iter() {
        for attribute in &span.attributes {
            for secret in [NAME, EMAIL, PHONE, BIRTH_DATE] {
                assert!(
                    !attribute.contains(secret),
                    "span {} carries {secret}: {attribute}",
                    span.name
                );
            }
        }
    }

    // The log: JSON lines, the trace id on the request's lines, no patient data.
    assert!(log.lines().count() > 50, "debug logging was on:\n{log}");
    let traced: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(&format!("\"trace_id\":\"{TRACE_ID}\"")))
        .collect();
    assert!(!traced.is_empty(), "some lines carry the caller's trace id");
    for line in &traced {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(value.get(key).is_some(), "{key} in {line}");
        }
    }
    assert!(
        log.lines().any(|line| line.contains(&format!("\"trace_id\":\"{INTERNAL_TRACE}\"")) && line.contains("internal error")),
        "the INTERNAL error's cause is logged under its trace id"
    );
    for secret in [NAME, EMAIL, PHONE, BIRTH_DATE, "Quintessa", "Phiwatch", "5550172233"] {
        let leaks: Vec<&str> = log.lines().filter(|line| line.contains(secret)).take(3).collect();
        assert!(leaks.is_empty(), "the log carries {secret}: {leaks:#?}");
    }
}
