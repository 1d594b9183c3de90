//! Test harness: a real Careslot router over a real database (an in-memory
//! SQLite, or a fresh PostgreSQL database created and dropped per test), a
//! manual clock, and helpers to speak GraphQL to it.

use api::app::{App, AppOptions};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use chrono::{DateTime, TimeZone, Utc};
use domain::clock::ManualClock;
use domain::settings::Settings;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

pub mod clinic;
mod fixtures;
pub mod peers;
pub mod postgres;
pub mod ws;

/// An HTTP client for tests. The workspace builds reqwest with rustls and no
/// crypto provider of its own (one backend only: ring), so the provider is
/// installed first, once per process.
pub fn http() -> reqwest::Client {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::new()
}

/// GETs `url` with [`http`].
pub async fn get(url: &str) -> reqwest::Result<reqwest::Response> {
    http().get(url).send().await
}

/// The bootstrap admin of every test app.
pub const ADMIN_EMAIL: &str = "admin@clinic.test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin password 1234";
/// Where the manual clock starts: a Wednesday.
pub fn test_epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .single()
        .expect("valid instant")
}

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// In-memory SQLite.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

/// A running app under test.
pub struct TestApp {
    /// The application (services, schema, settings).
    pub app: App,
    /// Its router.
    pub router: Router,
    /// The clock the app reads.
    pub clock: ManualClock,
    /// Which database.
    pub backend: Backend,
    /// How many SQL statements the app has run.
    pub statements: Arc<std::sync::atomic::AtomicU64>,
    /// Held so the PostgreSQL database is dropped when the test ends.
    _database: Option<postgres::TestDatabase>,
    _data_dir: tempdir::TempDir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A GraphQL response.
#[derive(Debug, Clone)]
pub struct Gql(pub Value);

impl Gql {
    /// `data`, panicking with the errors when there are any.
    pub fn data(&self) -> &Value {
        assert!(self.0.get("errors").is_none(), "unexpected errors: {}", self.0);
        &self.0["data"]
    }

    /// The first error's `extensions.code`, panicking when there is none.
    pub fn code(&self) -> &str {
        self.0["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error with a code: {}", self.0))
    }

    /// The first error's `extensions.field`.
    pub fn field(&self) -> Option<&str> {
        self.0["errors"][0]["extensions"]["field"].as_str()
    }

    /// The first error's message.
    pub fn message(&self) -> &str {
        self.0["errors"][0]["message"].as_str().unwrap_or("")
    }
}

impl TestApp {
    /// Starts an app on `backend` with extra settings.
    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> Self {
        // reqwest is built without a rustls provider of its own (one TLS backend).
        workers::install_crypto_provider();
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(postgres::TestDatabase::create().await),
        };
        let url = database
            .as_ref()
            .map_or_else(|| "sqlite::memory:".to_owned(), |d| d.url.clone());
        let data_dir = std::env::temp_dir().join(format!("careslot-test-{}", uuid::Uuid::new_v4()));
        let data_dir_text = data_dir.display().to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("DATABASE_URL", &url),
            ("CARESLOT_DATA_DIR", &data_dir_text),
            ("CARESLOT_JWT_SECRET", "test-secret-test-secret-test-secret-0123"),
            ("CARESLOT_PHI_KEYS", "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="),
            ("CARESLOT_PHI_INDEX_KEY", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="),
            ("CARESLOT_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL),
            ("CARESLOT_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("CARESLOT_DB_MAX_CONNECTIONS", "20"),
        ];
        env.extend_from_slice(extra);
        let settings = Settings::for_tests(&env).expect("test settings are valid");
        let clock = ManualClock::new(test_epoch());
        let statements = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let app = App::build(
            settings,
            AppOptions {
                clock: Arc::new(clock.clone()),
                fast_password_hashing: true,
                statement_counter: Some(statements.clone()),
            },
        )
        .await
        .expect("app builds");
        let router = api::http::router(app.clone());
        Self {
            app,
            router,
            clock,
            backend,
            statements,
            _database: database,
            _data_dir: tempdir::TempDir(data_dir),
        }
    }

    /// The URL of this app's database (PostgreSQL only; an in-memory SQLite has none).
    pub fn database_url(&self) -> Option<&str> {
        self._database.as_ref().map(|d| d.url.as_str())
    }

    /// Starts an app on `backend`.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Sends one GraphQL request, with a bearer token when given.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Gql {
        let body = json!({ "query": query, "variables": variables });
        let (status, value) = self.post_json("/graphql", token, &body).await;
        assert_eq!(status, 200, "GraphQL answers 200: {value}");
        Gql(value)
    }

    /// Posts JSON to `path` and answers the status and the JSON body.
    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("request");
        self.send(request).await
    }

    /// Sends a raw request and answers the status and the body as JSON (or a string).
    pub async fn send(&self, request: Request<Body>) -> (u16, Value) {
        let response = self.router.clone().oneshot(request).await.expect("router answers");
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// Serves the router on an ephemeral loopback port (for websocket clients)
    /// and answers its address; the server lives as long as the test's runtime.
    pub async fn serve(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = self.router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await;
        });
        addr
    }

    /// Signs in and answers the access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .gql(
                None,
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
                json!({ "e": email, "p": password }),
            )
            .await;
        response.data()["login"]["accessToken"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// The bootstrap admin's access token.
    pub async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }
}

/// Runs an `async fn(&TestApp)` once on SQLite and once on PostgreSQL, as two tests.
#[macro_export]
macro_rules! on_both_databases {
    ($($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn sqlite() {
                    let app = $crate::TestApp::spawn($crate::Backend::Sqlite).await;
                    super::$case(&app).await;
                }

                #[tokio::test]
                async fn postgres() {
                    let app = $crate::TestApp::spawn($crate::Backend::Postgres).await;
                    super::$case(&app).await;
                }
            }
        )+
    };
}
