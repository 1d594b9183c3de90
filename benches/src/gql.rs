//! Speaking GraphQL over HTTP to the server under test.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// One HTTP client for the whole run: it keeps connections alive and pools them.
pub fn client() -> reqwest::Client {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    // reqwest is built with rustls and no crypto provider of its own (one backend: ring).
    INSTALLED.call_once(workers::install_crypto_provider);
    reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default()
}

/// What one request came to.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The JSON body (`Null` when it was not JSON).
    pub body: Value,
}

impl Answer {
    /// The first error's `extensions.code`, if any.
    pub fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    /// `data`, or an error naming what went wrong.
    pub fn data(&self) -> anyhow::Result<&Value> {
        if self.status != 200 || self.body.get("errors").is_some() {
            bail!("HTTP {}: {}", self.status, self.body);
        }
        Ok(&self.body["data"])
    }
}

/// A GraphQL endpoint and a client for it.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    url: String,
}

impl Api {
    /// `base` is `http://host:port`.
    pub fn new(base: &str) -> Self {
        Self {
            client: client(),
            url: format!("{base}/graphql"),
        }
    }

    /// Posts a pre-serialized request body.
    pub async fn post(&self, token: Option<&str>, body: Vec<u8>) -> anyhow::Result<Answer> {
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// Runs `query` with `variables`.
    pub async fn run(&self, token: Option<&str>, query: &str, variables: Value) -> anyhow::Result<Answer> {
        self.post(token, body(query, variables)).await
    }

    /// Runs `query`, which must succeed, and answers its `data`.
    pub async fn data(&self, token: &str, query: &str, variables: Value) -> anyhow::Result<Value> {
        let answer = self.run(Some(token), query, variables).await?;
        answer.data().cloned().with_context(|| query.to_owned())
    }

    /// Signs in and answers the access token.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let answer = self
            .run(
                None,
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
                json!({ "e": email, "p": password }),
            )
            .await?;
        answer.data()?["login"]["accessToken"]
            .as_str()
            .map(str::to_owned)
            .context("login answered no token")
    }
}

/// A request body.
pub fn body(query: &str, variables: Value) -> Vec<u8> {
    json!({ "query": query, "variables": variables })
        .to_string()
        .into_bytes()
}

/// The availability read of the slots scenario (the shape of tests/src/clinic.rs).
pub const SLOTS: &str = "query($i: AvailableSlotsInput!) { availableSlots(input: $i) { providerId start end status } }";
/// The booking of the booking scenarios (tests/src/clinic.rs, trimmed to what a front desk reads back).
pub const BOOK: &str = "mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id status start end } }";
/// The subscription of the fan-out scenario.
pub const SLOTS_CHANGED: &str = "subscription($p: UUID!, $f: DateTime!, $t: DateTime!) { slotsChanged(providerId: $p, from: $f, to: $t) { providerId start end status } }";
