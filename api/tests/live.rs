//! Live subscriptions end to end: two `careslot-api` processes sharing
//! PostgreSQL and Redis. A client subscribed on instance A receives what a
//! booking on instance B changes; tokens are checked at `connection_init` and
//! on expiry; a Redis restart is survived and reported by `/readyz`.

mod common;

use careslot_tests::postgres::TestDatabase;
use chrono::{Duration as Days, Utc};
use common::{Server, WsClient, book, free_port, set_up, tomorrow};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SLOTS: &str = "subscription($p: UUID!, $from: DateTime!, $to: DateTime!) { slotsChanged(providerId: $p, from: $from, to: $to) { providerId start end status reason } }";
const DESK: &str = "subscription($l: UUID!) { appointmentsChanged(locationId: $l) { kind appointment { id status patient { name } } } }";

/// Environment shared by the instances of one deployment, on the Redis at `redis`.
fn deployment(database: &TestDatabase, redis: &str, channel: &str) -> Vec<(&'static str, String)> {
    common::shared_env(&database.url, channel)
        .into_iter()
        .map(|(key, value)| (key, if key == "REDIS_URL" { redis } else { value }.to_owned()))
        .collect()
}

async fn start(dir: &std::path::Path, env: &[(&'static str, String)], extra: &[(&'static str, &str)]) -> Server {
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    Server::start(dir, &all).await
}

/// Collects messages until `done` says enough, failing after 10 s.
async fn collect(client: &mut WsClient, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    while !done(&seen) {
        seen.push(client.next().await);
    }
    seen
}

fn payload<'a>(messages: &'a [Value], id: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| m["id"] == id && m["type"] == "next")
        .map(|m| &m["payload"]["data"])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_on_one_instance_reaches_subscribers_of_another() {
    let database = TestDatabase::create().await;
    let channel = format!("careslot:test:{}", uuid::Uuid::new_v4());
    let env = deployment(&database, "redis://127.0.0.1:6379", &channel);
    let dir = tempfile::tempdir().expect("tmp");
    let a = start(dir.path(), &env, &[]).await;
    let b = start(dir.path(), &env, &[]).await;
    let s = set_up(&b).await;
    let (from, to) = tomorrow();

    let mut desk = WsClient::initialized(&a.ws_url(), "graphql-transport-ws", &s.admin).await;
    desk.subscribe(
        "graphql-transport-ws",
        "slots",
        SLOTS,
        json!({ "p": s.provider, "from": from, "to": to }),
    )
    .await;
    desk.subscribe("graphql-transport-ws", "desk", DESK, json!({ "l": s.location }))
        .await;
    desk.subscribe(
        "graphql-transport-ws",
        "other",
        SLOTS,
        json!({ "p": s.other_provider, "from": from, "to": to }),
    )
    .await;
    let (later_from, later_to) = (
        (Utc::now() + Days::days(3)).to_rfc3339(),
        (Utc::now() + Days::days(4)).to_rfc3339(),
    );
    desk.subscribe(
        "graphql-transport-ws",
        "later",
        SLOTS,
        json!({ "p": s.provider, "from": later_from, "to": later_to }),
    )
    .await;
    // The legacy protocol on the same instance sees the same event.
    let mut legacy = WsClient::initialized(&a.ws_url(), "graphql-ws", &s.admin).await;
    legacy
        .subscribe(
            "graphql-ws",
            "1",
            SLOTS,
            json!({ "p": s.provider, "from": from, "to": to }),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let id = book(&b, &s).await;
    let seen = collect(&mut desk, |m| {
        !payload(m, "slots").is_empty() && !payload(m, "desk").is_empty()
    })
    .await;
    let slot = payload(&seen, "slots")[0];
    assert_eq!(slot["slotsChanged"]["status"], "BUSY");
    assert_eq!(slot["slotsChanged"]["reason"], "BOOKED");
    assert_eq!(slot["slotsChanged"]["providerId"], s.provider);
    let created = payload(&seen, "desk")[0];
    assert_eq!(created["appointmentsChanged"]["kind"], "CREATED");
    assert_eq!(created["appointmentsChanged"]["appointment"]["id"], id);
    assert_eq!(
        created["appointmentsChanged"]["appointment"]["patient"]["name"],
        "Lena Live"
    );
    let legacy_event = legacy.next().await;
    assert_eq!(
        (legacy_event["type"].as_str(), legacy_event["id"].as_str()),
        (Some("data"), Some("1"))
    );
    assert_eq!(legacy_event["payload"]["data"]["slotsChanged"]["reason"], "BOOKED");

    b.data(
        &s.admin,
        "mutation($id: UUID!) { cancelAppointment(id: $id, reason: \"test\") { status } }",
        json!({ "id": id }),
    )
    .await;
    let seen = collect(&mut desk, |m| {
        !payload(m, "slots").is_empty() && !payload(m, "desk").is_empty()
    })
    .await;
    assert_eq!(payload(&seen, "slots")[0]["slotsChanged"]["reason"], "RELEASED");
    assert_eq!(payload(&seen, "slots")[0]["slotsChanged"]["status"], "FREE");
    assert_eq!(payload(&seen, "desk")[0]["appointmentsChanged"]["kind"], "CANCELLED");
    // Nothing arrives for another provider or outside the subscribed range.
    while let Some(message) = desk.next_within(Duration::from_millis(500)).await {
        assert!(
            message["id"] != "other" && message["id"] != "later",
            "unexpected {message}"
        );
    }

    // A patient may watch slots but not the front desk's feed.
    let patient = b.token("lena@live.test", "patient password 1").await;
    let mut watcher = WsClient::initialized(&a.ws_url(), "graphql-transport-ws", &patient).await;
    watcher
        .subscribe("graphql-transport-ws", "desk", DESK, json!({ "l": s.location }))
        .await;
    let refused = watcher.next().await;
    // async-graphql answers a refused subscription as a result carrying the error.
    let errors = if refused["type"] == "error" {
        &refused["payload"]
    } else {
        &refused["payload"]["errors"]
    };
    assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{refused}");
    assert_eq!(refused["payload"]["data"], Value::Null, "{refused}");

    let metrics = careslot_tests::get(&format!("{}/metrics", a.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "careslot_ws_connections_open",
        "careslot_subscriptions_active",
        "careslot_bus_events_received_total",
        "careslot_subscription_events_delivered_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
    a.terminate();
    b.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_at_init_and_on_expiry() {
    let database = TestDatabase::create().await;
    let channel = format!("careslot:test:{}", uuid::Uuid::new_v4());
    let env = deployment(&database, "redis://127.0.0.1:6379", &channel);
    let dir = tempfile::tempdir().expect("tmp");
    let server = start(dir.path(), &env, &[("CARESLOT_ACCESS_TOKEN_TTL_SECONDS", "3")]).await;
    let token = server.admin_token().await;

    let mut forged = WsClient::connect(&server.ws_url(), "graphql-transport-ws").await;
    forged
        .send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer forged.token.here" } }))
        .await;
    let closed = forged.next().await;
    assert_eq!(
        (closed["type"].as_str(), closed["code"].as_u64()),
        (Some("close"), Some(4403)),
        "{closed}"
    );

    let mut missing = WsClient::connect(&server.ws_url(), "graphql-transport-ws").await;
    missing.send(json!({ "type": "connection_init", "payload": {} })).await;
    assert_eq!(missing.next().await["code"], 4403);

    let mut legacy = WsClient::connect(&server.ws_url(), "graphql-ws").await;
    legacy
        .send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer nope" } }))
        .await;
    assert_eq!(legacy.next().await["type"], "connection_error");

    let mut expiring = WsClient::initialized(&server.ws_url(), "graphql-transport-ws", &token).await;
    let (from, to) = tomorrow();
    expiring
        .subscribe(
            "graphql-transport-ws",
            "1",
            SLOTS,
            json!({ "p": uuid::Uuid::new_v4(), "from": from, "to": to }),
        )
        .await;
    let ended = expiring.next().await;
    assert_eq!(
        (ended["type"].as_str(), ended["code"].as_u64()),
        (Some("close"), Some(4403)),
        "{ended}"
    );
    assert!(ended["reason"].as_str().unwrap_or("").contains("expired"), "{ended}");
    server.terminate();
}

/// A Redis server of this test's own, on a free port.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server)");
        Self { child, port }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ready(server: &Server) -> bool {
    careslot_tests::get(&format!("{}/readyz", server.base))
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_reported_and_survived() {
    let port = free_port();
    let redis = PrivateRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let database = TestDatabase::create().await;
    let env = deployment(&database, &url, "careslot:events");
    let dir = tempfile::tempdir().expect("tmp");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = start(dir.path(), &env, &[]).await;
    let s = set_up(&server).await;
    assert!(ready(&server).await);

    redis.stop();
    wait_until("/readyz reports the outage", async || !ready(&server).await).await;
    let redis = PrivateRedis::start(port);
    wait_until("/readyz recovers", async || ready(&server).await).await;

    // The subscriber resubscribed: an event still travels through Redis.
    let (from, to) = tomorrow();
    let mut client = WsClient::initialized(&server.ws_url(), "graphql-transport-ws", &s.admin).await;
    client
        .subscribe(
            "graphql-transport-ws",
            "1",
            SLOTS,
            json!({ "p": s.provider, "from": from, "to": to }),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    book(&server, &s).await;
    let event = client.next().await;
    assert_eq!(event["payload"]["data"]["slotsChanged"]["reason"], "BOOKED", "{event}");
    assert_eq!(redis.port, port);
    server.terminate();
    redis.stop();
}

/// Signing out (or an administrator ending a user's sessions) on one instance
/// is honoured by every instance: the access token, still unexpired, is
/// refused over HTTP and at a websocket's `connection_init`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_are_refused_on_every_instance() {
    let database = TestDatabase::create().await;
    let channel = format!("careslot:test:{}", uuid::Uuid::new_v4());
    let env = deployment(&database, "redis://127.0.0.1:6379", &channel);
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let a = start(dir_a.path(), &env, &[]).await;
    let b = start(dir_b.path(), &env, &[]).await;
    let me = "{ me { id } }";
    let login = "mutation { login(email: \"admin@clinic.test\", password: \"admin password 1234\") { accessToken refreshToken user { id } } }";

    let session = a.gql(None, login, json!({})).await;
    let access = session["data"]["login"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let refresh = session["data"]["login"]["refreshToken"].clone();
    let other = a.admin_token().await;
    assert!(b.gql(Some(&access), me, json!({})).await.get("errors").is_none());

    let out = a
        .gql(
            None,
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": refresh }),
        )
        .await;
    assert_eq!(out["data"]["logout"], true, "{out}");
    let refused = b.gql(Some(&access), me, json!({})).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("session ended"),
        "{refused}"
    );
    let mut socket = WsClient::connect(&b.ws_url(), "graphql-transport-ws").await;
    socket
        .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {access}") } }))
        .await;
    assert_eq!(socket.next().await["code"], 4403);
    // Another sign-in of the same user is untouched.
    assert!(b.gql(Some(&other), me, json!({})).await.get("errors").is_none());

    // An administrator ends every session of a user through B; A refuses them.
    let user = session["data"]["login"]["user"]["id"].clone();
    let ended = b
        .gql(
            Some(&other),
            "mutation($u: UUID!) { revokeUserSessions(userId: $u) }",
            json!({ "u": user }),
        )
        .await;
    assert!(
        ended["data"]["revokeUserSessions"].as_i64().unwrap_or(0) >= 1,
        "{ended}"
    );
    let refused = a.gql(Some(&other), me, json!({})).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
    a.terminate();
    b.terminate();
}

/// Slot search is cached per instance; a booking on another instance drops
/// the cached occupancy as soon as its event arrives over Redis (the cache's
/// time-to-live is an hour here, so only the event can explain the change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_on_one_instance_refreshes_the_slot_search_of_another() {
    let database = TestDatabase::create().await;
    let env = deployment(&database, "redis://127.0.0.1:6379", &common::fresh_channel());
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let hour = [("CARESLOT_SLOT_CACHE_SECONDS", "3600")];
    let a = start(dir_a.path(), &env, &hour).await;
    let b = start(dir_b.path(), &env, &hour).await;
    let s = set_up(&a).await;
    let (from, to) = tomorrow();
    let search = "query($i: AvailableSlotsInput!) { availableSlots(input: $i) { start } }";
    let input = json!({ "i": { "providerId": s.provider, "appointmentTypeId": s.kind, "from": from, "to": to } });
    let offered = |data: Value| {
        data["availableSlots"]
            .as_array()
            .expect("slots")
            .iter()
            .any(|slot| slot["start"] == s.slot.as_str())
    };
    // Twice on A: the second answer comes from its cache.
    assert!(offered(a.data(&s.admin, search, input.clone()).await));
    assert!(offered(a.data(&s.admin, search, input.clone()).await));
    book(&b, &s).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while offered(a.data(&s.admin, search, input.clone()).await) {
        assert!(std::time::Instant::now() < deadline, "A still offers the slot B booked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.terminate();
    b.terminate();
}
