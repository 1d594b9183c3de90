//! The messages of the two websocket protocols: `graphql-transport-ws` (the
//! graphql-ws library) and the legacy `graphql-ws` (subscriptions-transport-ws).
//!
//! Server messages are written as text here rather than through serde: an
//! event's payload is serialized once and shared by every subscriber, and each
//! subscriber's frame is that payload between a prefix naming its operation id
//! and a closing brace (see [`Frames`]).

use async_graphql::Request;
use axum::extract::ws::Utf8Bytes;
use axum::http::HeaderMap;
use axum::http::header::SEC_WEBSOCKET_PROTOCOL;
use serde::Deserialize;

/// Which protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `graphql-transport-ws`: subscribe, next, complete, ping and pong.
    TransportWs,
    /// The legacy `graphql-ws`: start, data, stop, ka.
    Legacy,
}

impl Protocol {
    /// Its `Sec-WebSocket-Protocol` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::TransportWs => "graphql-transport-ws",
            Self::Legacy => "graphql-ws",
        }
    }

    /// The first protocol the client offers that we speak (as async-graphql chose it).
    pub fn offered(headers: &HeaderMap) -> Option<Self> {
        let offered = headers.get(SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
        offered.split(',').find_map(|p| {
            let p = p.trim();
            if p.eq_ignore_ascii_case("graphql-transport-ws") {
                Some(Self::TransportWs)
            } else if p.eq_ignore_ascii_case("graphql-ws") {
                Some(Self::Legacy)
            } else {
                None
            }
        })
    }
}

/// A message from the client, in either protocol (the same names async-graphql
/// accepts: `subscribe` is `start`, `complete` is `stop`).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // async-graphql's Request is the large one; one at a time
pub enum ClientMessage {
    /// Sent first (and handled before any other message); again is an error.
    ConnectionInit,
    /// Runs an operation.
    #[serde(alias = "subscribe")]
    Start {
        /// The client's name of the operation on this connection.
        id: String,
        /// The operation.
        payload: Request,
    },
    /// Ends an operation.
    #[serde(alias = "complete")]
    Stop {
        /// The client's name of the operation.
        id: String,
    },
    /// The client leaves (legacy).
    ConnectionTerminate,
    /// Answered with a pong.
    Ping,
    /// Nothing to do.
    Pong,
}

impl ClientMessage {
    /// Parses a text or binary message.
    pub fn parse(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }
}

/// `{"type":"connection_ack"}`.
pub const ACK: &str = r#"{"type":"connection_ack"}"#;
/// `{"type":"pong"}`.
pub const PONG: &str = r#"{"type":"pong"}"#;
/// The legacy protocol's keep-alive.
pub const KEEP_ALIVE: &str = r#"{"type":"ka"}"#;

/// The legacy protocol's `connection_error` with `message`.
pub fn connection_error(message: &str) -> String {
    serde_json::json!({ "type": "connection_error", "payload": { "message": message } }).to_string()
}

/// The frames of one operation id in one protocol: its results and its end.
#[derive(Debug)]
pub struct Frames {
    /// `{"type":"next","id":"…","payload":` (legacy: `data`); a result is this,
    /// the serialized response and `}`.
    prefix: String,
    /// `{"type":"complete","id":"…"}`.
    complete: Utf8Bytes,
}

impl Frames {
    /// The frames of operation `id` in `protocol`.
    pub fn new(protocol: Protocol, id: &str) -> Self {
        // serde_json escapes the id as a JSON string; it cannot fail for a &str.
        let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".into());
        let kind = match protocol {
            Protocol::TransportWs => "next",
            Protocol::Legacy => "data",
        };
        Self {
            prefix: format!(r#"{{"type":"{kind}","id":{id},"payload":"#),
            complete: format!(r#"{{"type":"complete","id":{id}}}"#).into(),
        }
    }

    /// The frame carrying a response already serialized as JSON.
    pub fn next(&self, payload: &str) -> Utf8Bytes {
        let mut frame = String::with_capacity(self.prefix.len() + payload.len() + 1);
        frame.push_str(&self.prefix);
        frame.push_str(payload);
        frame.push('}');
        frame.into()
    }

    /// The frame ending the operation.
    pub fn complete(&self) -> Utf8Bytes {
        self.complete.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_the_messages_async_graphql_wrote() {
        let frames = Frames::new(Protocol::TransportWs, "a\"1");
        let next: serde_json::Value = serde_json::from_str(&frames.next(r#"{"data":{"x":1}}"#)).expect("json");
        assert_eq!(
            next,
            serde_json::json!({ "type": "next", "id": "a\"1", "payload": { "data": { "x": 1 } } })
        );
        let legacy = Frames::new(Protocol::Legacy, "7");
        let data: serde_json::Value = serde_json::from_str(&legacy.next("{}")).expect("json");
        assert_eq!(data, serde_json::json!({ "type": "data", "id": "7", "payload": {} }));
        let complete: serde_json::Value = serde_json::from_str(&legacy.complete()).expect("json");
        assert_eq!(complete, serde_json::json!({ "type": "complete", "id": "7" }));
    }

    #[test]
    fn client_messages_of_both_protocols_parse() {
        let subscribe = r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { x }","variables":{"a":1}}}"#;
        assert!(matches!(ClientMessage::parse(subscribe.as_bytes()), Ok(ClientMessage::Start { id, .. }) if id == "1"));
        assert!(matches!(
            ClientMessage::parse(br#"{"type":"stop","id":"2"}"#),
            Ok(ClientMessage::Stop { .. })
        ));
        assert!(matches!(
            ClientMessage::parse(br#"{"type":"complete","id":"2"}"#),
            Ok(ClientMessage::Stop { .. })
        ));
        assert!(matches!(
            ClientMessage::parse(br#"{"type":"ping","payload":{"x":1}}"#),
            Ok(ClientMessage::Ping)
        ));
        assert!(matches!(
            ClientMessage::parse(br#"{"type":"connection_init","payload":{}}"#),
            Ok(ClientMessage::ConnectionInit)
        ));
        assert!(ClientMessage::parse(br#"{"type":"nope"}"#).is_err());
    }
}
