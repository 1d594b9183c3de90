//! GraphQL subscriptions over websockets (`graphql-transport-ws` and the
//! legacy `graphql-ws`), with what async-graphql leaves to the server:
//!
//! - the token from `connection_init` is checked before anything runs; a bad
//!   one closes with 4403 (legacy: `connection_error`), a missing init with 4408;
//! - the connection closes with 4403 when its token expires;
//! - every connection has a bounded send queue: a client that leaves it full,
//!   or takes no message for a few seconds, is closed (1013 when the close frame
//!   still fits) instead of slowing others or growing memory;
//! - idle connections are pinged; an instance holds at most a configured number
//!   of connections; open connections are a metric.

use crate::app::App;
use crate::caller::{Origin, authenticate};
use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::phi::RequestMeta;
use domain::{Caller, Services};
use futures_util::{SinkExt, StreamExt, stream};
use schema::RequestCaller;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument as _;

/// How long a client has to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client's send queue may stay full before the client counts as too slow.
const SLOW_CLIENT_GRACE: Duration = Duration::from_secs(5);
/// Largest message a client may send.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Metric: open websocket connections of this instance.
pub const OPEN_CONNECTIONS: &str = "careslot_ws_connections_open";
/// Metric: connections closed by the server, by reason.
pub const CLOSED_BY_SERVER: &str = "careslot_ws_closed_by_server_total";

/// Websocket limits of an instance.
#[derive(Debug)]
pub struct WsLimits {
    /// Most open connections.
    pub max_connections: usize,
    /// Ping interval.
    pub keepalive: Duration,
    /// Messages queued per connection before it counts as too slow.
    pub send_buffer: usize,
    /// Connections open now.
    pub open: AtomicUsize,
}

/// Counts one open connection while it lives.
struct ConnectionSlot(Arc<WsLimits>);

impl ConnectionSlot {
    fn acquire(limits: &Arc<WsLimits>) -> Option<Self> {
        let previous = limits.open.fetch_add(1, Ordering::SeqCst);
        if previous >= limits.max_connections {
            limits.open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        metrics::gauge!(OPEN_CONNECTIONS).increment(1.0);
        Some(Self(limits.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!(OPEN_CONNECTIONS).decrement(1.0);
    }
}

/// `GET /graphql/ws`.
pub async fn graphql_ws(
    State(app): State<App>,
    Origin(meta): Origin,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The same choice GraphQLProtocol made: the first protocol the client offers that we speak.
    let legacy = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        })
        .is_some_and(|p| matches!(p, WebSocketProtocols::SubscriptionsTransportWS));
    // The upgrade request's span is current here and continues the client's
    // traceparent. The session outlives it; it keeps only that traceparent (a
    // short string), and its own spans are short ones that continue it. A span
    // held for the whole session cost ~3.6 KB per idle connection (its data, and
    // the request span's, which a live child keeps alive) and an enter and exit
    // on every poll of the connection.
    let trace = telemetry::context::current_traceparent();
    let Some(slot) = ConnectionSlot::acquire(&app.ws) else {
        metrics::counter!(CLOSED_BY_SERVER, "reason" => "instance_full").increment(1);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many websocket connections").into_response();
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // tungstenite's defaults cost ~147 KB per idle connection; these ~19 KB.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(app, socket, protocol, legacy, meta, slot, trace))
}

/// The span of a session's start (`connection_init` and its token check),
/// in the trace of the upgrade request.
fn init_span(trace: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(parent: None, "graphql.ws.session", otel.kind = "server");
    if let Some(trace) = trace {
        telemetry::context::continue_from_traceparent(&span, trace);
    }
    span
}

/// The span of a session the server ends (too slow, token expired), in the
/// trace of the upgrade request.
fn close_span(trace: Option<&str>, reason: &'static str) -> tracing::Span {
    let span = tracing::info_span!(parent: None, "graphql.ws.close", otel.kind = "server", reason);
    if let Some(trace) = trace {
        telemetry::context::continue_from_traceparent(&span, trace);
    }
    span
}

/// Why the server ends a connection.
enum Ending {
    /// The client or the protocol ended it.
    Done,
    /// The client did not drain its queue.
    TooSlow,
    /// The token ran out.
    Expired,
}

async fn serve(
    app: App,
    socket: WebSocket,
    protocol: GraphQLProtocol,
    legacy: bool,
    meta: RequestMeta,
    _slot: ConnectionSlot,
    trace: Option<String>,
) {
    let (mut sink, mut incoming) = socket.split();

    // connection_init comes first and carries the token.
    let started = async {
        let init = match tokio::time::timeout(INIT_TIMEOUT, first_text(&mut incoming)).await {
            Ok(Some(text)) => text,
            Ok(None) => return None,
            Err(_) => {
                let _ = sink.send(close(4408, "Connection initialisation timeout")).await;
                return None;
            }
        };
        match authorize(&app.services, &init, meta).await {
            Ok((caller, expires_at)) => Some((init, caller, expires_at)),
            Err(reason) => {
                metrics::counter!(CLOSED_BY_SERVER, "reason" => "unauthorized").increment(1);
                if legacy {
                    let error = serde_json::json!({ "type": "connection_error", "payload": { "message": reason } });
                    let _ = sink.send(Message::Text(error.to_string().into())).await;
                }
                let _ = sink.send(close(4403, &format!("Forbidden: {reason}"))).await;
                None
            }
        }
    }
    .instrument(init_span(trace.as_deref()))
    .await;
    let Some((init, caller, expires_at)) = started else {
        return;
    };

    // async-graphql speaks the protocol; it sees the init message again and
    // receives the caller as connection data.
    let (queue, mut outgoing) = mpsc::channel::<Message>(app.ws.send_buffer);
    let overflowed = Arc::new(AtomicBool::new(false));
    let queue_sink = futures_util::sink::unfold(
        (queue, overflowed.clone()),
        |(queue, overflowed), message: Message| async move {
            // A burst may fill the queue for a moment; a client that leaves it full
            // for SLOW_CLIENT_GRACE is not keeping up and is let go.
            match queue.send_timeout(message, SLOW_CLIENT_GRACE).await {
                Ok(()) => Ok((queue, overflowed)),
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                    overflowed.store(true, Ordering::SeqCst);
                    Err(axum::Error::new("send queue full"))
                }
                Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(axum::Error::new("connection closed")),
            }
        },
    );
    let replayed = stream::once(async move { Ok(Message::Text(Utf8Bytes::from(init))) }).chain(incoming);
    let mut data = Data::default();
    data.insert(RequestCaller(caller));
    let protocol_task = GraphQLWebSocket::new_with_pair(Box::pin(queue_sink), replayed, app.schema.clone(), protocol)
        .on_connection_init(move |_| async move { Ok(data) })
        .serve();
    tokio::pin!(protocol_task);

    let mut keepalive = tokio::time::interval(app.ws.keepalive);
    keepalive.reset();
    let until_expiry = (expires_at - app.services.clock.now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let expiry = tokio::time::sleep(until_expiry);
    tokio::pin!(expiry);
    let mut protocol_done = false;
    let ending = loop {
        tokio::select! {
            // The protocol first, then its queue: a message it queues in this poll
            // goes out in the same poll instead of waiting for the task's next turn.
            biased;
            () = &mut protocol_task, if !protocol_done => {
                protocol_done = true;
                if overflowed.load(Ordering::SeqCst) {
                    break Ending::TooSlow;
                }
            }
            message = outgoing.recv() => match message {
                Some(message) => {
                    let is_close = matches!(message, Message::Close(_));
                    match tokio::time::timeout(SLOW_CLIENT_GRACE, sink.send(message)).await {
                        Ok(Ok(())) if !is_close => {}
                        Ok(_) => break Ending::Done,
                        // The client has not taken a message for the whole grace period.
                        Err(_) => break Ending::TooSlow,
                    }
                }
                None => break Ending::Done,
            },
            _ = keepalive.tick() => {
                let ping = if legacy { Message::Text(r#"{"type":"ka"}"#.into()) } else { Message::Ping(Default::default()) };
                if sink.send(ping).await.is_err() {
                    break Ending::Done;
                }
            }
            () = &mut expiry => break Ending::Expired,
        }
    };
    match ending {
        Ending::Done => {}
        Ending::TooSlow => {
            async {
                metrics::counter!(CLOSED_BY_SERVER, "reason" => "too_slow").increment(1);
                tracing::warn!("closing a websocket whose client does not keep up");
                // Its buffers may be full: try to say why, but do not wait for it.
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    sink.send(close(1013, "slow consumer: send queue full")),
                )
                .await;
            }
            .instrument(close_span(trace.as_deref(), "too_slow"))
            .await;
        }
        Ending::Expired => {
            async {
                metrics::counter!(CLOSED_BY_SERVER, "reason" => "token_expired").increment(1);
                let _ = sink.send(close(4403, "Forbidden: token expired")).await;
            }
            .instrument(close_span(trace.as_deref(), "token_expired"))
            .await;
        }
    }
}

/// The first text message, skipping pings; `None` when the client leaves.
async fn first_text<S>(incoming: &mut S) -> Option<String>
where
    S: futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    while let Some(Ok(message)) = incoming.next().await {
        match message {
            Message::Text(text) => return Some(text.to_string()),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
    None
}

/// The caller and token expiry of a `connection_init` message.
async fn authorize(
    services: &Services,
    init: &str,
    meta: RequestMeta,
) -> Result<(Caller, DateTime<Utc>), &'static str> {
    let message: serde_json::Value = serde_json::from_str(init).map_err(|_| "malformed message")?;
    if message.get("type").and_then(|t| t.as_str()) != Some("connection_init") {
        return Err("connection_init must come first");
    }
    let payload = message.get("payload").cloned().unwrap_or_default();
    let authorization = payload
        .get("authorization")
        .or_else(|| payload.get("Authorization"))
        .and_then(|v| v.as_str());
    let claims = authenticate(services, authorization)
        .await?
        .ok_or("authentication required")?;
    let expires_at = DateTime::from_timestamp(claims.exp, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let caller = Caller {
        actor: Some(claims.actor()),
        meta,
        credential_error: None,
    };
    Ok((caller, expires_at))
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
