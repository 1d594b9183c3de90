//! Shared subscriptions (api/src/ws/hub.rs): the same subscription of the same
//! actor runs once per instance and every subscriber gets the same events;
//! different actors never share; a late subscriber gets only later events; a
//! subscriber leaving does not stop the others, the last one stops the execution.

use careslot_tests::ws::{Socket, initialized, next_json, slot_event as event};
use careslot_tests::{Backend, TestApp};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const SLOTS: &str = "subscription($p: UUID!) { slotsChanged(providerId: $p, from: \"2026-01-01T00:00:00Z\", to: \"2027-01-01T00:00:00Z\") { providerId start reason } }";

/// Starts operation `id` (`subscribe`, or `start` in the legacy protocol).
async fn start(socket: &mut Socket, kind: &str, id: &str, query: &str, variables: Value) {
    let message = json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } });
    socket
        .send(Message::text(message.to_string()))
        .await
        .expect("subscribe");
}

/// Whether a text frame arrives within `wait`.
async fn silent_for(socket: &mut Socket, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return true,
            Ok(Some(Ok(Message::Text(text)))) => panic!("unexpected frame {text}"),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("connection ended: {other:?}"),
        }
    }
}

/// Waits (up to 10 s) until `done()`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_of_one_subscription_share_its_execution_and_its_events() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.serve().await;
    let token = app.admin().await;
    let hub = app.app.ws.hub.clone();
    let provider = uuid::Uuid::new_v4();
    let variables = json!({ "p": provider });
    let mut one = initialized(addr, &token, "graphql-transport-ws").await;
    let mut two = initialized(addr, &token, "graphql-transport-ws").await;
    let mut legacy = initialized(addr, &token, "graphql-ws").await;
    start(&mut one, "subscribe", "1", SLOTS, variables.clone()).await;
    start(&mut two, "subscribe", "1", SLOTS, variables.clone()).await;
    start(&mut legacy, "start", "x", SLOTS, variables.clone()).await;
    until("three subscribers", || hub.subscribers() == 3).await;
    assert_eq!(hub.executions(), 1, "one execution for the three");

    app.app.services.bus.publish(event(provider, 1)).await;
    let (a, b, c) = (
        next_json(&mut one).await,
        next_json(&mut two).await,
        next_json(&mut legacy).await,
    );
    assert_eq!(
        a,
        json!({ "type": "next", "id": "1", "payload": { "data": { "slotsChanged": {
        "providerId": provider, "start": "2026-06-01T00:01:00+00:00", "reason": "BOOKED" } } } })
    );
    assert_eq!(a, b, "the same frame");
    assert_eq!(c["type"], "data");
    assert_eq!(c["id"], "x");
    assert_eq!(c["payload"], a["payload"], "the same payload in the legacy protocol");

    // A query over the same socket runs for this connection, as before.
    start(&mut one, "subscribe", "q", "{ me { role } }", json!({})).await;
    assert_eq!(
        next_json(&mut one).await,
        json!({ "type": "next", "id": "q", "payload": { "data": { "me": { "role": "ADMIN" } } } })
    );
    assert_eq!(next_json(&mut one).await, json!({ "type": "complete", "id": "q" }));
    assert_eq!(hub.executions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_callers_never_share_an_execution() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.serve().await;
    let admin = app.admin().await;
    let hub = app.app.ws.hub.clone();
    let here = app.create_location(&admin, "Here", "UTC").await;
    let elsewhere = app.create_location(&admin, "Elsewhere", "UTC").await;
    let staff = app.staff(&admin, "far@clinic.test", &[&elsewhere]).await;

    // The admin may watch the location's appointments (patient data); the staff
    // member of another location may not. Same document, same variables: were
    // they shared, the staff member would get what the admin is shown.
    let appointments =
        "subscription($l: UUID!) { appointmentsChanged(locationId: $l) { kind appointment { id patient { name } } } }";
    let mut admins = initialized(addr, &admin, "graphql-transport-ws").await;
    start(&mut admins, "subscribe", "1", appointments, json!({ "l": here })).await;
    until("the admin's subscription", || hub.subscribers() == 1).await;
    let mut staffs = initialized(addr, &staff, "graphql-transport-ws").await;
    start(&mut staffs, "subscribe", "1", appointments, json!({ "l": here })).await;
    let refused = next_json(&mut staffs).await;
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    assert_eq!(next_json(&mut staffs).await, json!({ "type": "complete", "id": "1" }));
    assert!(
        silent_for(&mut admins, Duration::from_millis(200)).await,
        "the admin's goes on"
    );
    assert_eq!(hub.executions(), 1, "the refused one ended on its own");

    // Both may watch slots: still one execution each (and one per sign-in of the
    // same user, whose tokens carry different sessions).
    let second_admin = app.admin().await;
    let provider = uuid::Uuid::new_v4();
    let mut sockets = Vec::new();
    for token in [&admin, &staff, &second_admin] {
        let mut socket = initialized(addr, token, "graphql-transport-ws").await;
        start(&mut socket, "subscribe", "1", SLOTS, json!({ "p": provider })).await;
        sockets.push(socket);
    }
    until("four subscribers", || hub.subscribers() == 4).await;
    assert_eq!(hub.executions(), 4);
    app.app.services.bus.publish(event(provider, 2)).await;
    for socket in &mut sockets {
        let next = next_json(socket).await;
        assert_eq!(next["payload"]["data"]["slotsChanged"]["reason"], "BOOKED", "{next}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_gets_only_later_events_and_a_leaving_one_stops_no_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.serve().await;
    let token = app.admin().await;
    let hub = app.app.ws.hub.clone();
    let provider = uuid::Uuid::new_v4();
    let variables = json!({ "p": provider });
    let minute = |message: &Value| message["payload"]["data"]["slotsChanged"]["start"].clone();

    let mut early = initialized(addr, &token, "graphql-transport-ws").await;
    start(&mut early, "subscribe", "1", SLOTS, variables.clone()).await;
    until("the first subscriber", || hub.subscribers() == 1).await;
    app.app.services.bus.publish(event(provider, 1)).await;
    assert_eq!(minute(&next_json(&mut early).await), "2026-06-01T00:01:00+00:00");

    let mut late = initialized(addr, &token, "graphql-transport-ws").await;
    start(&mut late, "subscribe", "7", SLOTS, variables.clone()).await;
    until("the late subscriber", || hub.subscribers() == 2).await;
    assert_eq!(hub.executions(), 1, "the late one joined the running execution");
    app.app.services.bus.publish(event(provider, 2)).await;
    let first = next_json(&mut late).await;
    assert_eq!(first["id"], "7");
    assert_eq!(minute(&first), "2026-06-01T00:02:00+00:00", "not the earlier event");
    assert_eq!(minute(&next_json(&mut early).await), "2026-06-01T00:02:00+00:00");

    // The early one stops its subscription; the late one goes on.
    early
        .send(Message::text(json!({ "id": "1", "type": "complete" }).to_string()))
        .await
        .expect("complete");
    assert_eq!(next_json(&mut early).await, json!({ "type": "complete", "id": "1" }));
    until("one subscriber left", || hub.subscribers() == 1).await;
    app.app.services.bus.publish(event(provider, 3)).await;
    assert_eq!(minute(&next_json(&mut late).await), "2026-06-01T00:03:00+00:00");
    assert!(silent_for(&mut early, Duration::from_millis(200)).await);
    assert_eq!(hub.executions(), 1);

    // The last one leaving (closing its socket) stops the execution.
    drop(late);
    until("no execution", || hub.executions() == 0).await;
    assert_eq!(hub.subscribers(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_subscription_answers_each_subscriber_and_completes() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.serve().await;
    let token = app.admin().await;
    let hub = app.app.ws.hub.clone();
    let backwards = "subscription($p: UUID!) { slotsChanged(providerId: $p, from: \"2027-01-01T00:00:00Z\", to: \"2026-01-01T00:00:00Z\") { start } }";
    for id in ["a", "b"] {
        let mut socket = initialized(addr, &token, "graphql-transport-ws").await;
        start(
            &mut socket,
            "subscribe",
            id,
            backwards,
            json!({ "p": uuid::Uuid::new_v4() }),
        )
        .await;
        let error = next_json(&mut socket).await;
        assert_eq!(error["id"], id);
        assert_eq!(
            error["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{error}"
        );
        assert_eq!(next_json(&mut socket).await, json!({ "type": "complete", "id": id }));
    }
    until("no execution", || hub.executions() == 0).await;
}
