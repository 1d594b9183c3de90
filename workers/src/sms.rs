//! SMS through Twilio's Messages API, spoken directly: one form POST to
//! `{base}/2010-04-01/Accounts/{sid}/Messages.json` with basic auth. The base
//! URL is configurable (regional edges, tests against Twilio's own OpenAPI
//! description served by Prism). Twilio's error code and message are kept.

use crate::send::SendError;
use serde::Deserialize;
use std::time::Duration;

/// One SMS to send.
#[derive(Clone)]
pub struct OutgoingSms {
    /// Recipient, E.164 (PHI: never logged).
    pub to: String,
    /// Text.
    pub body: String,
}

/// Sends SMS.
#[async_trait::async_trait]
pub trait SmsSender: Send + Sync {
    /// Sends `sms`; answers the peer's id of it (Twilio's message SID).
    async fn send(&self, sms: OutgoingSms) -> Result<String, SendError>;
}

/// Twilio account settings.
#[derive(Clone)]
pub struct TwilioConfig {
    /// `https://api.twilio.com`, a regional edge, or a test endpoint.
    pub base_url: String,
    /// Account SID (`AC…`).
    pub account_sid: String,
    /// Auth token.
    pub auth_token: String,
    /// Sender number, E.164.
    pub from: String,
    /// Longest a call may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

/// The Twilio client.
pub struct TwilioSender {
    client: reqwest::Client,
    config: TwilioConfig,
}

/// Twilio's answer to a created message.
#[derive(Deserialize)]
struct Created {
    sid: String,
}

/// Twilio's error body (`code`, `message`); Prism's problem+json (`title`, `detail`) too.
#[derive(Deserialize, Default)]
struct ErrorBody {
    code: Option<i64>,
    message: Option<String>,
    title: Option<String>,
    detail: Option<String>,
}

impl TwilioSender {
    /// A client for `config`. The process must have installed the rustls
    /// provider first ([`crate::install_crypto_provider`]).
    pub fn new(config: TwilioConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("careslot-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, config })
    }
}

#[async_trait::async_trait]
impl SmsSender for TwilioSender {
    async fn send(&self, sms: OutgoingSms) -> Result<String, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.config.base_url.trim_end_matches('/'),
            self.config.account_sid
        );
        let form = [
            ("To", sms.to.as_str()),
            ("From", self.config.from.as_str()),
            ("Body", sms.body.as_str()),
        ];
        let response = self
            .client
            .post(url)
            .basic_auth(&self.config.account_sid, Some(&self.config.auth_token))
            .form(&form)
            .send()
            .await
            // No answer: Twilio may or may not have it; the lease and the delivery
            // record decide what a retry does.
            .map_err(|e| SendError::Transient(format!("Twilio unreachable: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            let created: Created = response
                .json()
                .await
                .map_err(|e| SendError::Transient(format!("Twilio answered {status} with an unreadable body: {e}")))?;
            return Ok(created.sid);
        }
        let body: ErrorBody = response.json().await.unwrap_or_default();
        let code = body.code.map(|c| format!(" code {c}")).unwrap_or_default();
        let text = body
            .message
            .or(body.detail)
            .or(body.title)
            .unwrap_or_else(|| "no detail".into());
        let error = format!("Twilio HTTP {}{code}: {text}", status.as_u16());
        // 429 and 5xx pass; any other 4xx is about this request and will not.
        if status.as_u16() == 429 || status.is_server_error() {
            Err(SendError::Transient(error))
        } else {
            Err(SendError::Permanent(error))
        }
    }
}
