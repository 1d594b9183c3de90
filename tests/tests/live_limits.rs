//! Websocket limits in process: a client that stops reading is closed when its
//! send queue overflows, without holding anyone else up; an instance refuses
//! connections beyond its limit.

use careslot_tests::ws::{Socket, initialized, next_json, slot_event as event};
use careslot_tests::{Backend, TestApp};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn subscribed(addr: std::net::SocketAddr, token: &str, provider: uuid::Uuid) -> Socket {
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    // A small receive buffer (no autotuning) so a client that stops reading
    // backs up into the server within a few megabytes.
    let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
    tcp.set_recv_buffer_size(4096).expect("buffer size");
    let stream = tcp.connect(addr).await.expect("tcp connects");
    let (mut socket, _) = tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
        .expect("connects");
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await.expect("init");
    let ack = socket.next().await.expect("ack").expect("frame");
    assert!(ack.to_text().expect("text").contains("connection_ack"));
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($p: UUID!) { slotsChanged(providerId: $p, from: \"2026-01-01T00:00:00Z\", to: \"2027-01-01T00:00:00Z\") { start reason } }",
        "variables": { "p": provider } } });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .expect("subscribe");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_and_others_go_on() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("CARESLOT_WS_SEND_BUFFER", "8")]).await;
    let addr = app.serve().await;
    let token = app.admin().await;
    let provider = uuid::Uuid::new_v4();
    let mut stalled = subscribed(addr, &token, provider).await;
    let mut reader = subscribed(addr, &token, provider).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // The reader keeps reading while far more is published than the kernel's
    // socket buffers and the stalled client's queue can hold.
    let read = Arc::new((AtomicUsize::new(0), tokio::sync::Notify::new()));
    let reading = tokio::spawn({
        let read = read.clone();
        async move {
            while let Ok(Some(Ok(frame))) = tokio::time::timeout(std::time::Duration::from_secs(5), reader.next()).await
            {
                if frame.is_text() {
                    read.0.fetch_add(1, Ordering::SeqCst);
                    read.1.notify_one();
                }
            }
            read.0.load(Ordering::SeqCst)
        }
    });
    // Publish until the server lets the stalled client go, never more than
    // IN_FLIGHT events ahead of what the reader has received. Paced by the
    // reader itself, not by the clock: however loaded the machine, the
    // reader's queue (8) never fills and the shared subscription never falls
    // behind the bus (4,096), so the one connection that overflows its queue
    // is the stalled one. (Paced by the clock, a busy machine let the reader
    // or the bus fall behind first, and the test failed about 2 runs in 3.)
    const IN_FLIGHT: usize = 4;
    let started = std::time::Instant::now();
    let mut published = 0usize;
    while app.app.ws.open.load(Ordering::SeqCst) > 1 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the stalled client was never closed"
        );
        if published - read.0.load(Ordering::SeqCst) >= IN_FLIGHT {
            // Woken by the reader; the timeout re-checks whether the stalled client is gone.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), read.1.notified()).await;
            continue;
        }
        app.app.services.bus.publish(event(provider, published as i64)).await;
        published += 1;
    }
    let metrics = api::telemetry::prometheus().render();
    assert!(
        metrics.contains("careslot_ws_closed_by_server_total{reason=\"too_slow\"} 1"),
        "{metrics}"
    );
    // The stalled client gets what was already on its way, then the end of the connection.
    let mut ended = false;
    while let Ok(next) = tokio::time::timeout(std::time::Duration::from_secs(10), stalled.next()).await {
        match next {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1013));
                ended = true;
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => {
                ended = true;
                break;
            }
        }
    }
    assert!(ended, "the stalled connection ended");
    let received = reading.await.expect("reader");
    assert!(
        received > 1000,
        "the reading client went on receiving ({received} events)"
    );
}

#[tokio::test]
async fn an_instance_refuses_connections_beyond_its_limit() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("CARESLOT_WS_MAX_CONNECTIONS", "2")]).await;
    let addr = app.serve().await;
    let token = app.admin().await;
    let _one = subscribed(addr, &token, uuid::Uuid::new_v4()).await;
    let _two = subscribed(addr, &token, uuid::Uuid::new_v4()).await;
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let third = tokio_tungstenite::connect_async(request).await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|(_, r)| r.status())),
    }
}

// One thread: the burst below runs without yielding, so the subscription cannot
// read the bus while it is published and must fall behind.
#[tokio::test]
async fn a_subscription_that_falls_behind_the_bus_is_told_and_completed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.serve().await;
    let token = app.admin().await;
    let provider = uuid::Uuid::new_v4();
    let mut socket = subscribed(addr, &token, provider).await;
    // Live first: one event arrives as usual.
    let mut live = false;
    for i in 0..100 {
        app.app.services.bus.publish(event(provider, i)).await;
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(std::time::Duration::from_millis(100), socket.next()).await
        {
            assert!(text.contains("\"next\""), "{text}");
            live = true;
            break;
        }
    }
    assert!(live, "the subscription never delivered");
    // More than the bus holds (4,096), with no chance for the subscription to read.
    for i in 0..5_000 {
        app.app.services.bus.publish(event(provider, 1_000 + i)).await;
    }
    // What it had read before falling behind is not lost; then it is told how
    // many events it missed, and the subscription completes.
    let error = loop {
        let message = next_json(&mut socket).await;
        assert_eq!(message["type"], "next", "{message}");
        if message["payload"]["errors"].is_array() {
            break message;
        }
    };
    let first = &error["payload"]["errors"][0];
    assert_eq!(first["extensions"]["code"], "INTERNAL", "{error}");
    assert!(first["extensions"]["missedEvents"].as_u64().unwrap_or(0) > 0, "{error}");
    assert!(first["message"].as_str().unwrap_or("").contains("missed"), "{error}");
    let complete = next_json(&mut socket).await;
    assert_eq!(complete["type"], "complete", "{complete}");
    assert_eq!(complete["id"], "1", "{complete}");
    let metrics = api::telemetry::prometheus().render();
    assert!(
        metrics.contains("careslot_subscription_events_dropped_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn connections_are_pinged_in_their_protocol() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("CARESLOT_WS_KEEPALIVE_SECONDS", "1")]).await;
    let addr = app.serve().await;
    let token = app.admin().await;
    for (protocol, legacy) in [("graphql-transport-ws", false), ("graphql-ws", true)] {
        let mut socket = initialized(addr, &token, protocol).await;
        // Two pings a second apart: the timer is set again after each.
        for _ in 0..2 {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(3), socket.next())
                .await
                .expect("a ping within 3 s")
                .expect("open")
                .expect("frame");
            if legacy {
                assert_eq!(frame.to_text().expect("text"), r#"{"type":"ka"}"#);
            } else {
                assert!(frame.is_ping(), "{frame:?}");
            }
        }
    }
}
