//! The start-up server: the port answers `/healthz` while the application is
//! built, refuses the rest with 503, then passes the socket on without
//! refusing a connection.

use api::startup::Listening;
use axum::Router;
use axum::routing::get;

#[tokio::test]
async fn probes_are_answered_while_the_app_is_built_then_the_socket_passes_on() {
    let listening = Listening::bind("127.0.0.1:0".parse().expect("address")).expect("binds");
    let base = format!("http://{}", listening.local_addr().expect("address"));
    let (finish, building) = tokio::sync::oneshot::channel::<u32>();
    let starting = tokio::spawn(listening.answer_while(async move { building.await.expect("built") }));

    let client = careslot_tests::http();
    let alive = client.get(format!("{base}/healthz")).send().await.expect("healthz");
    assert_eq!(alive.status(), 200);
    assert_eq!(alive.text().await.expect("body"), "ok");
    let ready = client.get(format!("{base}/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 503, "not ready while starting");
    assert_eq!(
        ready.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let graphql = client
        .post(format!("{base}/graphql"))
        .body(r#"{"query":"{ __typename }"}"#)
        .send()
        .await
        .expect("graphql");
    assert_eq!(graphql.status(), 503, "no request runs before the app is built");

    finish.send(7).expect("still building");
    let (built, listener) = starting.await.expect("task").expect("socket handed back");
    assert_eq!(built, 7, "what the build produced comes back");
    // A connection made before the next server runs waits in the backlog.
    let early = tokio::spawn({
        let client = careslot_tests::http();
        let url = format!("{base}/readyz");
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let next = Router::new().route("/readyz", get(|| async { "served by the application" }));
    tokio::spawn(async move { axum::serve(listener, next).await });
    let answer = early.await.expect("task").expect("answered, not refused");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.expect("body"), "served by the application");
}
