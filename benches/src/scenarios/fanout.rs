//! `slotsChanged` fan-out: many graphql-ws subscribers on one instance, events
//! through Redis. Measures delivery latency (from the booking request's start
//! to each subscriber's receipt), counts lost events, and the memory each idle
//! subscription costs (RSS delta / subscribers).

use super::{Ctx, days};
use crate::gql::{BOOK, SLOTS_CHANGED};
use crate::load::Recorder;
use crate::report::Scenario;
use crate::server::{Launch, Server};
use chrono::{DateTime, Duration as Span, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// What the subscribers share.
struct Shared {
    /// Event start (unix seconds) -> booking index.
    index: HashMap<i64, usize>,
    /// When each booking's request started.
    sent: Vec<OnceLock<Instant>>,
    /// Receipts per booking.
    received: Vec<AtomicU64>,
    /// Latencies of measured bookings (index >= 1; 0 is the warm-up).
    latency: Recorder,
    /// Subscribers connected and subscribed.
    subscribed: AtomicUsize,
    /// Subscribers that failed to connect or were closed.
    failed: AtomicUsize,
    /// Receipts of events no booking made, or twice.
    unexpected: AtomicU64,
}

/// A graphql-transport-ws frame, as far as the subscriber reads it.
#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    #[serde(borrow)]
    payload: Option<Payload<'a>>,
}

#[derive(serde::Deserialize)]
struct Payload<'a> {
    #[serde(borrow)]
    data: Option<Data<'a>>,
}

#[derive(serde::Deserialize)]
struct Data<'a> {
    #[serde(rename = "slotsChanged", borrow)]
    slots_changed: Option<Changed<'a>>,
}

#[derive(serde::Deserialize)]
struct Changed<'a> {
    start: &'a str,
}

async fn subscriber(url: String, token: String, variables: Value, shared: Arc<Shared>) {
    let fail = |shared: &Shared| {
        shared.failed.fetch_add(1, Ordering::Relaxed);
    };
    let Ok(mut request) = url.into_client_request() else {
        return fail(&shared);
    };
    if let Ok(value) = "graphql-transport-ws".parse() {
        request.headers_mut().insert("sec-websocket-protocol", value);
    }
    // Small buffers: ten thousand clients in one process.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let Ok((mut socket, _)) = tokio_tungstenite::connect_async_with_config(request, Some(config), true).await else {
        return fail(&shared);
    };
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    let subscribe =
        json!({ "id": "1", "type": "subscribe", "payload": { "query": SLOTS_CHANGED, "variables": variables } });
    if socket.send(Message::text(init.to_string())).await.is_err() {
        return fail(&shared);
    }
    let mut seen = vec![false; shared.sent.len()];
    let mut acked = false;
    while let Some(frame) = socket.next().await {
        let Ok(Message::Text(text)) = frame else {
            match frame {
                Ok(Message::Close(_)) | Err(_) => return fail(&shared),
                _ => continue,
            }
        };
        let now = Instant::now();
        // Only the fields the checks read, borrowed from the frame: ten
        // thousand subscribers share one core, and a full `Value` per frame
        // made the client the slower end of the pipe it measures.
        let Ok(message) = serde_json::from_str::<Frame>(&text) else {
            // Not the shape of a result (an `error` carries a list): read it whole.
            let kind = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned));
            if matches!(kind.as_deref(), Some("error" | "complete")) {
                return fail(&shared);
            }
            continue;
        };
        match message.kind {
            Some("connection_ack") if !acked => {
                acked = true;
                if socket.send(Message::text(subscribe.to_string())).await.is_err() {
                    return fail(&shared);
                }
                shared.subscribed.fetch_add(1, Ordering::Relaxed);
            }
            Some("next") => {
                let start = message
                    .payload
                    .and_then(|p| p.data)
                    .and_then(|d| d.slots_changed)
                    .and_then(|c| DateTime::parse_from_rfc3339(c.start).ok())
                    .map(|t| t.timestamp());
                match start.and_then(|s| shared.index.get(&s)).copied() {
                    Some(i) if !seen[i] => {
                        seen[i] = true;
                        shared.received[i].fetch_add(1, Ordering::Relaxed);
                        if i > 0
                            && let Some(sent) = shared.sent[i].get()
                        {
                            shared.latency.record(now.saturating_duration_since(*sent));
                        }
                    }
                    _ => {
                        shared.unexpected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some("error") | Some("complete") => return fail(&shared),
            _ => {}
        }
    }
    fail(&shared)
}

/// Waits until `done()` or `limit` passes; answers whether it held.
async fn until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}

/// Runs the scenario (fan-out and memory per idle subscription).
pub async fn run(ctx: &Ctx) -> Vec<Scenario> {
    let c = &ctx.config;
    let (subscribers, bookings, pace) = if c.smoke {
        (50, 5, Duration::from_millis(50))
    } else {
        (10_000, 100, Duration::from_millis(100))
    };
    let mut fanout = Scenario::new(&format!(
        "slotsChanged fan-out: {subscribers} graphql-ws subscribers, events through Redis"
    ));
    let mut memory = Scenario::new(&format!(
        "memory per idle websocket subscription ({subscribers} subscribers)"
    ));
    let clinic = &ctx.clinic;
    let provider = clinic.providers[0].clone();
    let starts: Vec<DateTime<Utc>> = (0..=bookings).map(|i| clinic.slot(days::FANOUT, i as i64)).collect();
    let shared = Arc::new(Shared {
        index: starts.iter().enumerate().map(|(i, s)| (s.timestamp(), i)).collect(),
        sent: (0..=bookings).map(|_| OnceLock::new()).collect(),
        received: (0..=bookings).map(|_| AtomicU64::new(0)).collect(),
        latency: Recorder::default(),
        subscribed: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        unexpected: AtomicU64::new(0),
    });
    let variables = json!({ "p": provider, "f": clinic.slot(days::FANOUT, 0).to_rfc3339(), "t": (clinic.slot(days::FANOUT, 0) + Span::days(days::HOT - days::FANOUT)).to_rfc3339() });
    // A fresh instance holds the subscribers: its RSS has not been grown by the
    // earlier load, and the bookings (made on the first instance) reach it only
    // through Redis.
    let launch = Launch {
        dir: ctx.launch.dir.join("fanout"),
        ..ctx.launch.clone()
    };
    let instance = match Server::start(&launch, Duration::from_secs(60)).await {
        Ok(instance) => instance,
        Err(e) => {
            fanout.check("the subscribers' instance starts", false, format!("{e:#}"));
            return vec![fanout, memory];
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = instance.rss().unwrap_or(0);
    let connecting = Instant::now();
    let url = instance.ws_url();
    let mut tasks = Vec::with_capacity(subscribers);
    for n in 0..subscribers {
        tasks.push(tokio::spawn(subscriber(
            url.clone(),
            clinic.admin.clone(),
            variables.clone(),
            shared.clone(),
        )));
        // Do not flood the listen backlog: a few hundred handshakes in flight.
        if n % 200 == 199 {
            let target = n + 1 - 200;
            until(Duration::from_secs(30), || {
                shared.subscribed.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) >= target
            })
            .await;
        }
    }
    let all_in = until(Duration::from_secs(120), || {
        shared.subscribed.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) >= subscribers
    })
    .await;
    let connect_seconds = connecting.elapsed().as_secs_f64();
    let book = |i: usize| {
        let (api, shared, variables) = (ctx.api.clone(), shared.clone(), clinic.booking(0, i, starts[i]));
        async move {
            let _ = shared.sent[i].set(Instant::now());
            api.data(&clinic.admin, BOOK, variables).await.map(|_| ())
        }
    };
    // The warm-up event proves every subscription is live before anything is measured.
    let warm = book(0).await;
    let warmed = until(Duration::from_secs(60), || {
        shared.received[0].load(Ordering::Relaxed) as usize >= subscribers
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = instance.rss().unwrap_or(0);
    let mut booking_errors = usize::from(warm.is_err());
    for i in 1..=bookings {
        let started = Instant::now();
        if book(i).await.is_err() {
            booking_errors += 1;
        }
        tokio::time::sleep(pace.saturating_sub(started.elapsed())).await;
    }
    let expected = (subscribers * bookings) as u64;
    let received = || {
        (1..=bookings)
            .map(|i| shared.received[i].load(Ordering::Relaxed))
            .sum::<u64>()
    };
    until(Duration::from_secs(30), || received() >= expected).await;
    let got = received();
    for task in &tasks {
        task.abort();
    }
    instance.stop();
    let latency = shared.latency.percentiles();
    fanout.at_most("p50 delivery latency", latency.p50_ms, 50.0, "ms");
    fanout.at_most("p99 delivery latency", latency.p99_ms, 150.0, "ms");
    fanout.info("max delivery latency", format!("{:.1} ms", latency.max_ms));
    // The first receipt of an event: the booking request, its commit and the
    // Redis hop, before any fan-out (the rest of the latency is the fan-out).
    fanout.info("min delivery latency", format!("{:.1} ms", latency.min_ms));
    fanout.info("connect + subscribe all", format!("{connect_seconds:.1} s"));
    let failed = shared.failed.load(Ordering::Relaxed);
    fanout.check(
        &format!("all {subscribers} subscribers connected and live"),
        all_in && warmed && failed == 0,
        format!(
            "{} subscribed, {failed} failed, warm-up reached {}",
            shared.subscribed.load(Ordering::Relaxed),
            shared.received[0].load(Ordering::Relaxed)
        ),
    );
    fanout.check(
        &format!("zero lost events over {bookings} bookings (all delivered within 30 s of the last)"),
        got == expected && booking_errors == 0,
        format!("{got} of {expected} delivered; {booking_errors} bookings failed"),
    );
    let unexpected = shared.unexpected.load(Ordering::Relaxed);
    fanout.check(
        "no duplicate or foreign events",
        unexpected == 0,
        format!("{unexpected} unexpected"),
    );
    let per = rss_after.saturating_sub(rss_before) as f64 / subscribers as f64 / 1024.0;
    memory.at_most("RSS per idle subscription", per, 20.0, "KB");
    memory.at_most(
        &format!("RSS with {subscribers} idle subscribers"),
        rss_after as f64 / 1048576.0,
        250.0,
        "MB",
    );
    memory.info(
        "RSS before connecting",
        format!("{:.1} MB", rss_before as f64 / 1048576.0),
    );
    memory.check(
        "the server's RSS was read",
        rss_before > 0 && rss_after > 0,
        format!("{rss_before} -> {rss_after} bytes"),
    );
    vec![fanout, memory]
}
