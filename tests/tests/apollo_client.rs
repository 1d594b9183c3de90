//! The real JavaScript clients the apps use (Apollo Client with GraphQLWsLink
//! from graphql-ws, in Node) receive a booking's slot event. Needs Node and
//! `npm ci` in tests/client (`.ci/run` does it); fails, never skips, without them.

use careslot_tests::clinic::{Clinic, at};
use careslot_tests::{Backend, TestApp};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// The client's next line of output, as JSON.
async fn next_json(lines: &mut Lines) -> Value {
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
        .await
        .expect("the client answers within 20 s")
        .expect("stdout readable")
        .expect("a line before the client exits");
    serde_json::from_str(&line).expect("JSON line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apollo_client_receives_a_booking() {
    let client_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("client");
    assert!(
        client_dir.join("node_modules/@apollo/client").exists(),
        "run `npm ci` in {} first (.ci/run does)",
        client_dir.display()
    );
    let app = TestApp::spawn(Backend::Sqlite).await;
    let clinic = Clinic::open(&app).await;
    let addr = app.serve().await;
    let mut node = Command::new("node")
        .arg(client_dir.join("subscribe.mjs"))
        .env("CARESLOT_URL", format!("http://{addr}"))
        .env("CARESLOT_TOKEN", &clinic.patient_token)
        .env("CARESLOT_PROVIDER", &clinic.provider)
        .env("CARESLOT_FROM", "2026-11-26T00:00:00Z")
        .env("CARESLOT_TO", "2026-11-27T00:00:00Z")
        .env("CARESLOT_EVENTS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (is Node.js installed?)");
    let mut lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let ready = next_json(&mut lines).await;
    assert_eq!(
        ready,
        json!({ "ready": true, "role": "PATIENT" }),
        "the HTTP query through Apollo works too"
    );

    clinic
        .book(&app, &clinic.staff, &clinic.patient, "2026-11-26T15:00:00Z", json!({}))
        .await
        .data();
    let mut event = next_json(&mut lines).await;
    // Apollo's cache adds the type name.
    assert_eq!(
        event.as_object_mut().and_then(|e| e.remove("__typename")),
        Some(json!("SlotsChangedEvent"))
    );
    assert_eq!(
        event,
        json!({ "providerId": clinic.provider, "start": at("2026-11-26T15:00:00Z"), "end": at("2026-11-26T15:30:00Z"), "status": "BUSY", "reason": "BOOKED" })
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), node.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(status.success(), "client exit status {status:?}");
}
