//! Request limits, login throttling, security headers and CORS.

use axum::body::Body;
use axum::http::Request;
use careslot_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Backend, TestApp};
use serde_json::json;

const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }";

#[tokio::test]
async fn a_user_over_the_limit_is_told_when_to_come_back() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("CARESLOT_RATE_LIMIT_USER_PER_MINUTE", "5")]).await;
    let token = app.admin().await;
    let staff = app.staff(&token, "desk@clinic.test", &[]).await;
    for _ in 0..4 {
        app.gql(Some(&token), "{ me { id } }", json!({})).await.data();
    }
    let limited = app.gql(Some(&token), "{ me { id } }", json!({})).await;
    assert_eq!(limited.code(), "RATE_LIMITED");
    let wait = limited.0["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .expect("retryAfterSeconds");
    assert!((1..=60).contains(&wait), "{wait}");
    // Another user is not affected.
    app.gql(Some(&staff), "{ me { id } }", json!({})).await.data();
}

#[tokio::test]
async fn an_address_over_the_limit_is_refused() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("CARESLOT_RATE_LIMIT_IP_PER_MINUTE", "3")]).await;
    let request = || {
        Request::post("/graphql")
            .header("content-type", "application/json")
            .header("x-real-ip", "203.0.113.9")
            .body(Body::from(json!({ "query": "{ __typename }" }).to_string()))
            .expect("request")
    };
    for _ in 0..3 {
        let (status, body) = app.send(request()).await;
        assert_eq!((status, &body["data"]["__typename"]), (200, &json!("Query")));
    }
    let (_, body) = app.send(request()).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED", "{body}");
}

#[tokio::test]
async fn repeated_login_failures_lock_the_account_for_a_growing_time() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for _ in 0..5 {
        let wrong = app
            .gql(None, LOGIN, json!({ "e": ADMIN_EMAIL, "p": "wrong password!!" }))
            .await;
        assert_eq!(wrong.code(), "UNAUTHENTICATED");
    }
    // Now even the right password waits.
    let locked = app
        .gql(None, LOGIN, json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }))
        .await;
    assert_eq!(locked.code(), "RATE_LIMITED");
    assert!(
        locked.0["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .is_some_and(|s| s >= 1)
    );
    // An unknown email is throttled the same way: the lock reveals nothing.
    for _ in 0..5 {
        app.gql(
            None,
            LOGIN,
            json!({ "e": "ghost@clinic.test", "p": "whatever password" }),
        )
        .await;
    }
    assert_eq!(
        app.gql(None, LOGIN, json!({ "e": "ghost@clinic.test", "p": "x" }))
            .await
            .code(),
        "RATE_LIMITED"
    );
    // Once the wait is over, the right password works again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = app
        .gql(None, LOGIN, json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }))
        .await;
    assert!(again.data()["login"]["accessToken"].is_string());
}

#[tokio::test]
async fn responses_carry_security_headers_and_cors_follows_the_allowlist() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("CARESLOT_CORS_ORIGINS", "https://app.clinic.example")],
    )
    .await;
    let response = app
        .router
        .clone()
        .oneshot_request(
            Request::post("/graphql")
                .header("content-type", "application/json")
                .header("x-forwarded-proto", "https")
                .body(Body::from(json!({ "query": "{ __typename }" }).to_string()))
                .expect("request"),
        )
        .await;
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["strict-transport-security"]
            .to_str()
            .expect("ascii")
            .contains("max-age=")
    );

    let preflight = |origin: &'static str| {
        Request::options("/graphql")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .body(Body::empty())
            .expect("request")
    };
    let allowed = app
        .router
        .clone()
        .oneshot_request(preflight("https://app.clinic.example"))
        .await;
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.clinic.example"
    );
    let denied = app
        .router
        .clone()
        .oneshot_request(preflight("https://evil.example"))
        .await;
    assert!(denied.headers().get("access-control-allow-origin").is_none());
}

/// `oneshot` that answers the response itself.
trait Oneshot {
    async fn oneshot_request(self, request: Request<Body>) -> axum::response::Response;
}

impl Oneshot for axum::Router {
    async fn oneshot_request(self, request: Request<Body>) -> axum::response::Response {
        use tower::ServiceExt;
        self.oneshot(request).await.expect("router answers")
    }
}
