//! The real `careslot-api` binary: starts with no configuration, answers a
//! login and a `createLocation`, stops cleanly on SIGTERM; bad settings stop it
//! with a message naming the setting; `migrate` is safe to run concurrently.

mod common;

use careslot_tests::postgres::TestDatabase;
use common::{Server, command};
use serde_json::{Value, json};
use std::process::{Child, Stdio};

async fn login_and_create_location(server: &Server) {
    let login = server
        .gql(
            None,
            "mutation { login(email: \"admin@clinic.test\", password: \"admin password 1234\") { accessToken user { role } } }",
            json!({}),
        )
        .await;
    assert_eq!(login["data"]["login"]["user"]["role"], "ADMIN", "{login}");
    let token = login["data"]["login"]["accessToken"].as_str().expect("token");
    let created = server
        .gql(
            Some(token),
            "mutation { createLocation(input: { name: \"Main St\", timeZone: \"Europe/London\" }) { id timeZone } }",
            json!({}),
        )
        .await;
    assert_eq!(
        created["data"]["createLocation"]["timeZone"], "Europe/London",
        "{created}"
    );
}

#[tokio::test]
async fn runs_with_no_configuration_on_embedded_sqlite() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(dir.path(), &[]).await;
    login_and_create_location(&server).await;
    let ready = careslot_tests::get(&format!("{}/readyz", server.base))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let graphiql = careslot_tests::get(&format!("{}/graphql", server.base))
        .await
        .expect("graphiql");
    assert!(graphiql.text().await.expect("html").contains("graphiql"));

    let (status, log) = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}\n{log}");
    assert!(log.contains("GraphiQL at http://127.0.0.1:"), "{log}");
    assert!(log.contains("DATABASE_URL not set"), "{log}");
    assert!(log.contains("generated development value"), "{log}");
    assert!(dir.path().join("data/careslot.db").exists());
    assert!(dir.path().join("data/secrets/jwt_secret").exists());

    // A restart keeps the data and the keys: the admin still signs in.
    let again = Server::start(dir.path(), &[]).await;
    login_and_create_location(&again).await;
    let (_, log) = again.terminate();
    assert!(log.contains("read development value"), "{log}");
}

#[tokio::test]
async fn runs_on_postgresql() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(
        dir.path(),
        &[("DATABASE_URL", &database.url), ("CARESLOT_LOG_FORMAT", "json")],
    )
    .await;
    login_and_create_location(&server).await;
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    let first_line: Value = serde_json::from_str(log.lines().next().expect("a log line")).expect("JSON log lines");
    assert!(first_line.get("level").is_some(), "{first_line}");
    assert!(!dir.path().join("data/careslot.db").exists());
}

#[test]
fn invalid_settings_stop_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, value) in [
        ("CARESLOT_LISTEN", "nowhere"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("CARESLOT_JWT_SECRET", "too short"),
    ] {
        let output = command(dir.path(), &[(name, value)]).output().expect("runs");
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    let production = command(dir.path(), &[("CARESLOT_ENV", "production")])
        .output()
        .expect("runs");
    assert!(!production.status.success());
    assert!(String::from_utf8_lossy(&production.stderr).contains("CARESLOT_JWT_SECRET"));
    assert!(
        !dir.path().join("data/secrets").exists(),
        "production never generates secrets"
    );
}

#[tokio::test]
async fn concurrent_migrate_runs_do_not_race() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tmp");
    let children: Vec<Child> = (0..3)
        .map(|_| {
            command(dir.path(), &[("DATABASE_URL", &database.url)])
                .arg("migrate")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("migrate starts")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("migrate ends");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let server = Server::start(
        dir.path(),
        &[("DATABASE_URL", &database.url), ("CARESLOT_MIGRATE_ON_START", "false")],
    )
    .await;
    login_and_create_location(&server).await;
    server.terminate();
}

/// In the embedded default the worker runs inside `careslot-api`: a booking's
/// confirmation lands in `data/outbox/` as an email with a calendar invitation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_worker_writes_the_confirmation_to_the_outbox() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(dir.path(), &[]).await;
    let setup = common::set_up(&server).await;
    common::book(&server, &setup).await;
    let outbox = dir.path().join("data/outbox");
    let mut message = None;
    for _ in 0..150 {
        let found = std::fs::read_dir(&outbox).ok().and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .find(|e| e.path().extension().is_some_and(|x| x == "eml"))
        });
        if let Some(entry) = found {
            message = Some(std::fs::read_to_string(entry.path()).expect("readable"));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let message = message.expect("a confirmation in data/outbox within 30 s");
    assert!(message.contains("lena@live.test"), "addressed to the patient");
    assert!(message.contains("BEGIN:VCALENDAR"), "with a calendar invitation");
    assert!(
        !message.contains("Visit"),
        "the appointment type stays out of the message"
    );
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
}
