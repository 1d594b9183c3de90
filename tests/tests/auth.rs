//! Sign-in, tokens, sessions and roles, on SQLite and PostgreSQL.

use careslot_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, on_both_databases};
use chrono::Duration;
use serde_json::json;

const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken refreshToken expiresAt user { id email role } } }";
const REFRESH: &str = "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }";
const ME: &str = "{ me { id email role providerId patientId } }";

async fn login_and_me(app: &TestApp) {
    let session = app
        .gql(None, LOGIN, json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }))
        .await;
    let login = &session.data()["login"];
    assert_eq!(login["user"]["role"], "ADMIN");
    assert_eq!(login["user"]["email"], ADMIN_EMAIL);
    let token = login["accessToken"].as_str().expect("token");
    let me = app.gql(Some(token), ME, json!({})).await;
    assert_eq!(me.data()["me"]["id"], login["user"]["id"]);
    assert_eq!(me.data()["me"]["role"], "ADMIN");

    // Email is matched case-insensitively.
    let upper = app
        .gql(
            None,
            LOGIN,
            json!({ "e": ADMIN_EMAIL.to_uppercase(), "p": ADMIN_PASSWORD }),
        )
        .await;
    assert_eq!(upper.data()["login"]["user"]["role"], "ADMIN");
}

async fn wrong_password_and_unknown_email_look_alike(app: &TestApp) {
    let wrong = app
        .gql(None, LOGIN, json!({ "e": ADMIN_EMAIL, "p": "not the password" }))
        .await;
    let unknown = app
        .gql(None, LOGIN, json!({ "e": "nobody@clinic.test", "p": ADMIN_PASSWORD }))
        .await;
    assert_eq!(wrong.code(), "UNAUTHENTICATED");
    assert_eq!(unknown.code(), "UNAUTHENTICATED");
    assert_eq!(wrong.message(), unknown.message());
}

async fn refresh_rotates_and_reuse_revokes_the_family(app: &TestApp) {
    let session = app
        .gql(None, LOGIN, json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }))
        .await;
    let first = session.data()["login"]["refreshToken"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let rotated = app.gql(None, REFRESH, json!({ "t": first })).await;
    let second = rotated.data()["refreshSession"]["refreshToken"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_ne!(first, second);
    let access = rotated.data()["refreshSession"]["accessToken"]
        .as_str()
        .expect("access");
    assert_eq!(app.gql(Some(access), ME, json!({})).await.data()["me"]["role"], "ADMIN");

    // Replaying the first token is refused, and it takes the rotated one down too.
    assert_eq!(
        app.gql(None, REFRESH, json!({ "t": first })).await.code(),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        app.gql(None, REFRESH, json!({ "t": second })).await.code(),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        app.gql(None, REFRESH, json!({ "t": "csr_garbage" })).await.code(),
        "UNAUTHENTICATED"
    );
}

async fn logout_revokes_the_refresh_token(app: &TestApp) {
    let session = app
        .gql(None, LOGIN, json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }))
        .await;
    let refresh = session.data()["login"]["refreshToken"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let out = app
        .gql(
            None,
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": refresh }),
        )
        .await;
    assert_eq!(out.data()["logout"], true);
    assert_eq!(
        app.gql(None, REFRESH, json!({ "t": refresh })).await.code(),
        "UNAUTHENTICATED"
    );
    let again = app
        .gql(
            None,
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": "csr_unknown" }),
        )
        .await;
    assert_eq!(again.data()["logout"], false);
}

async fn expired_tampered_and_missing_tokens_are_unauthenticated(app: &TestApp) {
    let token = app.admin().await;
    assert_eq!(app.gql(None, ME, json!({})).await.code(), "UNAUTHENTICATED");
    assert_eq!(
        app.gql(Some("not.a.jwt"), ME, json!({})).await.code(),
        "UNAUTHENTICATED"
    );

    let mut tampered = token.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    assert_eq!(app.gql(Some(&tampered), ME, json!({})).await.code(), "UNAUTHENTICATED");

    app.clock.advance(Duration::minutes(16));
    let expired = app.gql(Some(&token), ME, json!({})).await;
    assert_eq!(expired.code(), "UNAUTHENTICATED");
    assert!(expired.message().contains("expired"), "{}", expired.message());

    // Operations that need no user still work with a stale token attached.
    let login = app
        .gql(Some(&token), LOGIN, json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }))
        .await;
    assert!(login.data()["login"]["accessToken"].is_string());
}

async fn admin_creates_staff_and_roles_are_enforced(app: &TestApp) {
    let admin = app.admin().await;
    let create = "mutation($i: CreateUserInput!) { createUser(input: $i) { id email role } }";
    let staff = app
        .gql(
            Some(&admin),
            create,
            json!({ "i": { "email": "Desk@Clinic.test", "password": "front desk 12345", "role": "STAFF" } }),
        )
        .await;
    assert_eq!(staff.data()["createUser"]["email"], "desk@clinic.test");
    let staff_token = app.login("desk@clinic.test", "front desk 12345").await;
    assert_eq!(
        app.gql(Some(&staff_token), ME, json!({})).await.data()["me"]["role"],
        "STAFF"
    );

    // STAFF may not create accounts; duplicate emails and weak passwords are refused.
    let by_staff = app
        .gql(
            Some(&staff_token),
            create,
            json!({ "i": { "email": "x@clinic.test", "password": "front desk 12345", "role": "STAFF" } }),
        )
        .await;
    assert_eq!(by_staff.code(), "FORBIDDEN");
    let duplicate = app
        .gql(
            Some(&admin),
            create,
            json!({ "i": { "email": "DESK@clinic.test", "password": "front desk 12345", "role": "ADMIN" } }),
        )
        .await;
    assert_eq!(
        (duplicate.code(), duplicate.field()),
        ("BAD_USER_INPUT", Some("input.email"))
    );
    let weak = app
        .gql(
            Some(&admin),
            create,
            json!({ "i": { "email": "y@clinic.test", "password": "short", "role": "STAFF" } }),
        )
        .await;
    assert_eq!((weak.code(), weak.field()), ("BAD_USER_INPUT", Some("input.password")));
    let provider_role = app
        .gql(
            Some(&admin),
            create,
            json!({ "i": { "email": "z@clinic.test", "password": "front desk 12345", "role": "PROVIDER" } }),
        )
        .await;
    assert_eq!(
        (provider_role.code(), provider_role.field()),
        ("BAD_USER_INPUT", Some("input.role"))
    );
}

on_both_databases!(
    login_and_me,
    wrong_password_and_unknown_email_look_alike,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_revokes_the_refresh_token,
    expired_tampered_and_missing_tokens_are_unauthenticated,
    admin_creates_staff_and_roles_are_enforced,
);
