//! GraphQL over websockets (`graphql-transport-ws` and the legacy
//! `graphql-ws`), spoken here rather than by async-graphql's websocket layer so
//! that subscriptions can be shared (see [`hub`]):
//!
//! - the token from `connection_init` is checked before anything runs; a bad
//!   one closes with 4403 (legacy: `connection_error`), a missing init with 4408;
//! - the connection closes with 4403 when its token expires;
//! - a subscription runs once per instance for all connections with the same
//!   operation, variables and actor, its results serialized once ([`hub`]);
//!   queries and mutations sent over the socket run for their connection alone;
//! - every connection has a bounded send queue: a client that lets it fill up,
//!   or takes no frame for a few seconds, is closed (1013 when the close frame
//!   still fits) instead of slowing others or growing memory;
//! - connections are pinged; an instance holds at most a configured number of
//!   connections; open connections are a metric.
//!
//! Every operation runs through [`schema::CareslotSchema`] (document cache,
//! limits, contract error codes, metrics).

pub mod hub;
pub mod protocol;

use crate::app::App;
use crate::caller::{Origin, authenticate};
use async_graphql::Data;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::auth::Actor;
use domain::phi::RequestMeta;
use domain::{Caller, Services};
use futures_util::StreamExt;
use futures_util::stream::{self, AbortHandle, BoxStream, SelectAll};
use hub::{Hub, Out, Outbox, Subscription};
use protocol::{ClientMessage, Frames, Protocol};
use schema::RequestCaller;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;
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
    /// The instance's shared subscriptions.
    pub hub: Arc<Hub>,
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
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = Protocol::offered(&headers) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
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
        // The one the session speaks, whatever else the client offered.
        .protocols([protocol.name()])
        // tungstenite's defaults cost ~147 KB per idle connection; these ~19 KB.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(app, socket, protocol, meta, slot, trace))
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
    /// The client did not drain its queue, or took no frame for SLOW_CLIENT_GRACE.
    TooSlow,
    /// The token ran out.
    Expired,
}

/// One operation of a connection, named by the client's id.
struct Op {
    /// Names the operation in queued messages ([`Out::Ended`]).
    token: u64,
    /// Dropping it ends the operation.
    _running: Running,
}

/// How an operation runs. Held only to be dropped: that ends the operation.
#[allow(dead_code)]
enum Running {
    /// A subscription shared with the instance's other subscribers (hub.rs).
    Shared(Subscription),
    /// Executed for this connection alone (queries, mutations), polled by the session.
    Local(AbortOnDrop),
}

/// Stops a connection's own operation when it is dropped.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a client message asks the session to do.
enum Reply {
    /// Nothing to write.
    Nothing,
    /// Write this (and go on).
    Send(Message),
    /// Write this if anything, then end the connection.
    End(Option<Message>),
}

/// A connection after `connection_init`: its operations and where their frames go.
struct Session {
    app: App,
    protocol: Protocol,
    actor: Actor,
    data: Arc<Data>,
    outbox: Arc<Outbox>,
    ops: HashMap<String, Op>,
    /// The streams of local operations: their frames, then [`Out::Ended`].
    local: SelectAll<BoxStream<'static, Out>>,
}

impl Session {
    /// Handles one message from the client.
    fn handle(&mut self, message: Option<Result<Message, axum::Error>>) -> Reply {
        let bytes = match message {
            Some(Ok(Message::Text(text))) => Bytes::from(text),
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Reply::Nothing,
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Reply::End(None),
        };
        let message = match ClientMessage::parse(&bytes) {
            Ok(message) => message,
            Err(error) => return Reply::End(Some(close(1002, &error.to_string()))),
        };
        match message {
            ClientMessage::ConnectionInit => {
                const TOO_MANY: &str = "Too many initialisation requests.";
                Reply::End(Some(match self.protocol {
                    Protocol::TransportWs => close(4429, TOO_MANY),
                    Protocol::Legacy => Message::Text(protocol::connection_error(TOO_MANY).into()),
                }))
            }
            ClientMessage::Start { id, payload } => {
                self.start(id, payload);
                Reply::Nothing
            }
            ClientMessage::Stop { id } => {
                // Through the queue, after the frames of the operation already in it.
                if self.ops.remove(&id).is_some() {
                    self.outbox.push(Out::Frame(Frames::new(self.protocol, &id).complete()));
                }
                Reply::Nothing
            }
            ClientMessage::ConnectionTerminate => Reply::End(None),
            ClientMessage::Ping => Reply::Send(Message::Text(Utf8Bytes::from_static(protocol::PONG))),
            ClientMessage::Pong => Reply::Nothing,
        }
    }

    /// Starts operation `id`; one already named so is replaced (as async-graphql did).
    fn start(&mut self, id: String, request: async_graphql::Request) {
        let token = self.app.ws.hub.token();
        let running = if self
            .app
            .schema
            .is_subscription(&request.query, request.operation_name.as_deref())
        {
            Running::Shared(self.app.ws.hub.subscribe(
                request,
                &self.actor,
                &self.data,
                self.protocol,
                &id,
                token,
                &self.outbox,
            ))
        } else {
            let frames = Frames::new(self.protocol, &id);
            let complete = frames.complete();
            let results = self
                .app
                .schema
                .execute_stream(request, Some(self.data.clone()))
                .map(move |response| match serde_json::to_string(&response) {
                    Ok(payload) => Out::Frame(frames.next(&payload)),
                    Err(_) => Out::Frame(frames.next(r#"{"errors":[{"message":"unserializable response"}]}"#)),
                })
                .chain(stream::once(async move { Out::Ended { token, frame: complete } }));
            let (results, abort) = stream::abortable(results);
            self.local.push(results.boxed());
            Running::Local(AbortOnDrop(abort))
        };
        self.ops.insert(
            id,
            Op {
                token,
                _running: running,
            },
        );
    }

    /// The frame of a queued or local message, `None` when its operation was
    /// replaced meanwhile.
    fn frame(&mut self, out: Out) -> Option<Message> {
        match out {
            Out::Frame(frame) => Some(Message::Text(frame)),
            Out::Ended { token, frame } => {
                let before = self.ops.len();
                self.ops.retain(|_, op| op.token != token);
                (self.ops.len() < before).then_some(Message::Text(frame))
            }
        }
    }
}

/// Writes `message`, or gives up after SLOW_CLIENT_GRACE: a client that takes
/// no frame for that long is not keeping up.
async fn write(socket: &mut WebSocket, message: Message) -> Result<(), Ending> {
    let mut send = std::pin::pin!(socket.send(message));
    // Nearly every write completes at once (the kernel takes the frame); only
    // one that has to wait needs a timer, which costs a clock read and more.
    if let Poll::Ready(sent) = futures_util::poll!(send.as_mut()) {
        return sent.map_err(|_| Ending::Done);
    }
    match tokio::time::timeout(SLOW_CLIENT_GRACE, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ending::Done),
        Err(_) => Err(Ending::TooSlow),
    }
}

async fn serve(
    app: App,
    mut socket: WebSocket,
    protocol: Protocol,
    meta: RequestMeta,
    _slot: ConnectionSlot,
    trace: Option<String>,
) {
    // connection_init comes first and carries the token.
    let started = async {
        let init = match tokio::time::timeout(INIT_TIMEOUT, first_text(&mut socket)).await {
            Ok(Some(text)) => text,
            Ok(None) => return None,
            Err(_) => {
                let _ = write(&mut socket, close(4408, "Connection initialisation timeout")).await;
                return None;
            }
        };
        match authorize(&app.services, &init, meta).await {
            Ok((caller, expires_at)) => Some((caller, expires_at)),
            Err(reason) => {
                metrics::counter!(CLOSED_BY_SERVER, "reason" => "unauthorized").increment(1);
                if protocol == Protocol::Legacy {
                    let _ = write(&mut socket, Message::Text(protocol::connection_error(reason).into())).await;
                }
                let _ = write(&mut socket, close(4403, &format!("Forbidden: {reason}"))).await;
                None
            }
        }
    }
    .instrument(init_span(trace.as_deref()))
    .await;
    let Some((caller, expires_at)) = started else {
        return;
    };
    let Some(actor) = caller.actor.clone() else {
        return;
    };
    if write(&mut socket, Message::Text(Utf8Bytes::from_static(protocol::ACK)))
        .await
        .is_err()
    {
        return;
    }

    let (outbox, mut queue) = Outbox::new(app.ws.send_buffer);
    let mut data = Data::default();
    data.insert(RequestCaller(caller));
    let mut session = Session {
        app: app.clone(),
        protocol,
        actor,
        data: Arc::new(data),
        outbox,
        ops: HashMap::new(),
        local: SelectAll::new(),
    };

    // One timer for both the next ping and the token's expiry: the session
    // polls it on every turn, and one is cheaper than two.
    let expires = tokio::time::Instant::now()
        + (expires_at - app.services.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
    let timer = tokio::time::sleep_until((tokio::time::Instant::now() + app.ws.keepalive).min(expires));
    tokio::pin!(timer);
    let ending = loop {
        // Checked before every write: a connection whose queue overflowed lost
        // a frame and must not go on as if it had not.
        if session.outbox.overflowed() {
            break Ending::TooSlow;
        }
        let message = tokio::select! {
            // Frames first (they are what the client waits for), then the client.
            biased;
            out = queue.recv() => match out {
                Some(out) => session.frame(out),
                // The session holds a sender; this does not happen.
                None => break Ending::Done,
            },
            Some(out) = session.local.next(), if !session.local.is_empty() => session.frame(out),
            message = socket.recv() => match session.handle(message) {
                Reply::Nothing => None,
                Reply::Send(message) => Some(message),
                Reply::End(last) => {
                    if let Some(last) = last {
                        let _ = write(&mut socket, last).await;
                    }
                    break Ending::Done;
                }
            },
            () = &mut timer => {
                let now = tokio::time::Instant::now();
                if now >= expires {
                    break Ending::Expired;
                }
                timer.as_mut().reset((now + app.ws.keepalive).min(expires));
                Some(match protocol {
                    Protocol::Legacy => Message::Text(Utf8Bytes::from_static(protocol::KEEP_ALIVE)),
                    Protocol::TransportWs => Message::Ping(Bytes::new()),
                })
            }
        };
        if let Some(message) = message
            && let Err(ending) = write(&mut socket, message).await
        {
            break ending;
        }
    };
    // The session's subscriptions leave their executions before the close is written.
    drop(session);
    match ending {
        Ending::Done => {}
        Ending::TooSlow => {
            async {
                metrics::counter!(CLOSED_BY_SERVER, "reason" => "too_slow").increment(1);
                tracing::warn!("closing a websocket whose client does not keep up");
                // Its buffers may be full: try to say why, but do not wait for it.
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    socket.send(close(1013, "slow consumer: send queue full")),
                )
                .await;
            }
            .instrument(close_span(trace.as_deref(), "too_slow"))
            .await;
        }
        Ending::Expired => {
            async {
                metrics::counter!(CLOSED_BY_SERVER, "reason" => "token_expired").increment(1);
                let _ = write(&mut socket, close(4403, "Forbidden: token expired")).await;
            }
            .instrument(close_span(trace.as_deref(), "token_expired"))
            .await;
        }
    }
}

/// The first text message, skipping pings; `None` when the client leaves.
async fn first_text(socket: &mut WebSocket) -> Option<String> {
    while let Some(Ok(message)) = socket.recv().await {
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
