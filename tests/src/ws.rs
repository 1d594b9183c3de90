//! Websocket clients for tests of `/graphql/ws`: connecting in a protocol,
//! `connection_init` with a token, reading JSON frames, and the slot events
//! tests publish on the bus.

use domain::events::{DomainEvent, SlotChangeReason, SlotEvent, SlotStatus};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A client websocket.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connection to `/graphql/ws` offering `protocol`; panics unless the server picks it.
pub async fn open(addr: SocketAddr, protocol: &str) -> Socket {
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connects");
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    socket
}

/// A connection in `protocol` past `connection_init` with `token` (acknowledged).
pub async fn initialized(addr: SocketAddr, token: &str, protocol: &str) -> Socket {
    let mut socket = open(addr, protocol).await;
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await.expect("init");
    assert_eq!(next_json(&mut socket).await["type"], "connection_ack");
    socket
}

/// The next text frame as JSON, skipping pings; panics after 10 s.
pub async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("json");
        }
    }
}

/// A one-minute `BUSY` (booked) slot event of `provider`, `minute` minutes
/// after 2026-06-01T00:00Z.
pub fn slot_event(provider: uuid::Uuid, minute: i64) -> DomainEvent {
    let start = chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .expect("time")
        .to_utc()
        + chrono::Duration::minutes(minute);
    DomainEvent::Slot(SlotEvent {
        provider_id: provider.into(),
        start,
        end: start + chrono::Duration::minutes(1),
        status: SlotStatus::Busy,
        reason: SlotChangeReason::Booked,
    })
}
