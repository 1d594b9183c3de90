//! Runs the real `careslot-api` binary for end-to-end tests.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_careslot-api");

/// Secrets every instance of a test deployment shares.
pub const JWT: &str = "test-deployment-secret-test-deployment-secret-0123";
/// The PHI key of test deployments.
pub const PHI: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
/// The blind-index key of test deployments.
pub const INDEX: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

/// A fresh Redis channel: a deployment of its own, whose rate-limit counters
/// and ended sessions (kept under the channel's name) no other test shares.
pub fn fresh_channel() -> String {
    format!("careslot:test:{}", uuid::Uuid::new_v4())
}

/// The environment every instance of one test deployment shares: its
/// database, the machine's Redis under its own channel, and its secrets.
pub fn shared_env<'a>(database_url: &'a str, channel: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("DATABASE_URL", database_url),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("CARESLOT_REDIS_CHANNEL", channel),
        ("CARESLOT_JWT_SECRET", JWT),
        ("CARESLOT_PHI_KEYS", PHI),
        ("CARESLOT_PHI_INDEX_KEY", INDEX),
    ]
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The binary with a clean environment: only what the test sets.
pub fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

pub struct Server {
    /// The process; `None` once [`Server::terminate`] took it.
    pub child: Option<Child>,
    pub base: String,
}

/// A test that panics midway must not leave its servers running.
impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Server {
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut env = env.to_vec();
        env.push(("CARESLOT_LISTEN", &listen));
        env.push(("CARESLOT_BOOTSTRAP_ADMIN_EMAIL", "admin@clinic.test"));
        env.push(("CARESLOT_BOOTSTRAP_ADMIN_PASSWORD", "admin password 1234"));
        let child = command(dir, &env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        let server = Self {
            child: Some(child),
            base: format!("http://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = careslot_tests::http();
        while Instant::now() < deadline {
            // /healthz answers while the server still starts; /readyz once it serves.
            if let Ok(response) = client.get(format!("{}/readyz", server.base)).send().await
                && response.status().is_success()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("careslot-api was not ready (/readyz) within 60 s");
    }

    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = careslot_tests::http()
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request").json().await.expect("json")
    }

    /// Sends SIGTERM and answers the exit status and everything the server logged.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let output = child.wait_with_output().expect("server exits");
        let log = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        (output.status, log)
    }
}

impl Server {
    /// The address for websocket clients.
    pub fn ws_url(&self) -> String {
        format!("{}/graphql/ws", self.base.replacen("http", "ws", 1))
    }

    /// Signs in as the bootstrap admin.
    pub async fn admin_token(&self) -> String {
        self.token("admin@clinic.test", "admin password 1234").await
    }

    /// Signs in and answers the access token.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let login = self
            .gql(
                None,
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
                json!({ "e": email, "p": password }),
            )
            .await;
        login["data"]["login"]["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("login failed: {login}"))
            .to_owned()
    }

    /// Runs a query that must succeed and answers its `data`.
    pub async fn data(&self, token: &str, query: &str, variables: Value) -> Value {
        let response = self.gql(Some(token), query, variables).await;
        assert!(response.get("errors").is_none(), "{query}: {response}");
        response["data"].clone()
    }
}

/// The setup shared by the end-to-end tests.
/// A clinic open around the clock (the binaries run on the real clock), set up through `server`.
pub struct Setup {
    pub admin: String,
    pub location: String,
    pub provider: String,
    pub other_provider: String,
    pub kind: String,
    pub patient: String,
    pub slot: String,
}

pub async fn set_up(server: &Server) -> Setup {
    let admin = server.admin_token().await;
    let location = server
        .data(
            &admin,
            "mutation { createLocation(input: { name: \"Live\", timeZone: \"UTC\" }) { id } }",
            json!({}),
        )
        .await["createLocation"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut providers = Vec::new();
    for email in ["one@live.test", "two@live.test"] {
        let created = server
            .data(
                &admin,
                "mutation($l: UUID!, $e: String!) { createProvider(input: { name: \"Dr. Live\", email: $e, password: \"provider pass 1234\", locationIds: [$l] }) { id } }",
                json!({ "l": location, "e": email }),
            )
            .await;
        providers.push(created["createProvider"]["id"].as_str().expect("id").to_owned());
    }
    let rules: Vec<Value> = (1..=7)
        .map(|d| json!({ "weekday": d, "startTime": "00:00", "endTime": "24:00" }))
        .collect();
    for provider in &providers {
        server
            .data(
                &admin,
                "mutation($p: UUID!, $l: UUID!, $r: [WeeklyRuleInput!]!) { setWeeklyAvailability(providerId: $p, locationId: $l, rules: $r) { id } }",
                json!({ "p": provider, "l": location, "r": rules }),
            )
            .await;
    }
    let kind = server
        .data(&admin, "mutation($l: UUID!) { createAppointmentType(input: { name: \"Visit\", durationMinutes: 30, locationId: $l }) { id } }", json!({ "l": location }))
        .await["createAppointmentType"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let patient = server
        .data(
            &admin,
            "mutation { createPatient(input: { name: \"Lena Live\", birthDate: \"1990-01-01\", email: \"lena@live.test\", password: \"patient password 1\" }) { id } }",
            json!({}),
        )
        .await["createPatient"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (from, to) = tomorrow();
    let slots = server
        .data(
            &admin,
            "query($i: AvailableSlotsInput!) { availableSlots(input: $i) { start } }",
            json!({ "i": { "providerId": providers[0], "appointmentTypeId": kind, "from": from, "to": to } }),
        )
        .await;
    let slot = slots["availableSlots"][0]["start"]
        .as_str()
        .expect("a free slot tomorrow")
        .to_owned();
    Setup {
        admin,
        location,
        other_provider: providers[1].clone(),
        provider: providers[0].clone(),
        kind,
        patient,
        slot,
    }
}

pub fn tomorrow() -> (String, String) {
    let day = (chrono::Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    (day.to_rfc3339(), (day + chrono::Duration::days(1)).to_rfc3339())
}

pub async fn book(server: &Server, s: &Setup) -> String {
    let booked = server
        .data(
            &s.admin,
            "mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id } }",
            json!({ "i": { "providerId": s.provider, "patientId": s.patient, "appointmentTypeId": s.kind, "start": s.slot } }),
        )
        .await;
    booked["bookAppointment"]["id"].as_str().expect("id").to_owned()
}

/// A websocket client speaking the GraphQL protocols by hand, to see every frame.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl WsClient {
    /// Connects with `protocol` (`graphql-transport-ws` or `graphql-ws`).
    pub async fn connect(url: &str, protocol: &str) -> Self {
        Self::connect_with(url, protocol, None).await
    }

    /// Like [`WsClient::connect`]; `wss://` URLs use `tls` (e.g. trusting a test CA).
    pub async fn connect_with(url: &str, protocol: &str, tls: Option<tokio_tungstenite::Connector>) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().expect("header"));
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(request, None, false, tls)
            .await
            .expect("websocket connects");
        Self { socket }
    }

    /// Connects and completes `connection_init` with `token`.
    pub async fn initialized(url: &str, protocol: &str, token: &str) -> Self {
        Self::initialized_with(url, protocol, token, None).await
    }

    /// Like [`WsClient::initialized`] over [`WsClient::connect_with`].
    pub async fn initialized_with(
        url: &str,
        protocol: &str,
        token: &str,
        tls: Option<tokio_tungstenite::Connector>,
    ) -> Self {
        let mut client = Self::connect_with(url, protocol, tls).await;
        client
            .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await;
        let ack = client.next().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        client
    }

    /// Sends one JSON message.
    pub async fn send(&mut self, message: Value) {
        use futures_util::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::text(message.to_string()))
            .await
            .expect("send");
    }

    /// Starts subscription `id` (either protocol).
    pub async fn subscribe(&mut self, protocol: &str, id: &str, query: &str, variables: Value) {
        let kind = if protocol == "graphql-ws" { "start" } else { "subscribe" };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next JSON message (pings and keep-alives skipped), or
    /// `{"type": "close", "code": …, "reason": …}`, within 10 s.
    pub async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("a message within 10 s")
    }

    /// Like [`WsClient::next`], `None` when nothing comes within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next()).await.ok()?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("json");
                    if value["type"] == "ka" {
                        continue;
                    }
                    return Some(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(json!({
                        "type": "close",
                        "code": frame.as_ref().map(|f| u16::from(f.code)),
                        "reason": frame.as_ref().map(|f| f.reason.to_string()),
                    }));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some(json!({ "type": "close", "code": null })),
            }
        }
    }
}
