//! What every request relies on: PHI encrypted at rest, the audit trail, probes,
//! limits, errors that leak nothing, and the websocket endpoint.

use careslot_tests::ws::{Socket, open as connect};
use careslot_tests::{TestApp, on_both_databases};
use domain::events::{DomainEvent, SlotChangeReason, SlotEvent, SlotStatus};
use futures_util::{SinkExt, StreamExt};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Statement};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const NAME: &str = "Zebulon Quintavius";
const EMAIL: &str = "zebulon.q@example.org";
const PHONE: &str = "+15557654321";

async fn phi_is_never_stored_in_plaintext(app: &TestApp) {
    let admin = app.admin().await;
    app.create_patient(&admin, json!({ "name": NAME, "birthDate": "1977-07-07", "email": EMAIL, "phone": PHONE, "password": "long enough password" }))
        .await;
    let db = &app.app.services.db;
    let needles: [&[u8]; 5] = [b"Zebulon", b"Quintavius", b"zebulon.q", b"7654321", b"1977-07-07"];
    let contains = |haystack: &[u8]| needles.iter().any(|n| haystack.windows(n.len()).any(|w| w == *n));
    for row in entity::patient::Entity::find().all(db).await.expect("patients") {
        for column in [
            Some(&row.name_enc),
            Some(&row.birth_date_enc),
            row.email_enc.as_ref(),
            row.phone_enc.as_ref(),
        ] {
            assert!(!contains(column.expect("stored")), "plaintext PHI in patients");
        }
        assert!(!contains(row.email_bidx.as_deref().unwrap_or_default().as_bytes()));
    }
    for row in entity::user::Entity::find().all(db).await.expect("users") {
        assert!(
            !contains(&row.email_enc) && !contains(row.email_bidx.as_bytes()),
            "plaintext email in users"
        );
    }
    for row in entity::audit_log::Entity::find().all(db).await.expect("audit") {
        assert!(
            !contains(row.detail.map(|d| d.to_string()).unwrap_or_default().as_bytes()),
            "PHI in the audit log"
        );
    }
    if app.backend == careslot_tests::Backend::Postgres {
        // Every column of every table, as PostgreSQL renders it.
        for table in ["patients", "users", "patient_name_tokens", "audit_log"] {
            let row = db
                .query_one_raw(Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT coalesce(string_agg(t::text, ' '), '') AS dump FROM {table} t"),
                ))
                .await
                .expect("dump")
                .expect("one row");
            let dump: String = row.try_get("", "dump").expect("text");
            assert!(!contains(dump.as_bytes()), "plaintext PHI in {table}");
        }
    }
}

async fn every_phi_read_and_write_is_audited(app: &TestApp) {
    let admin = app.admin().await;
    let id = app
        .create_patient(&admin, json!({ "name": NAME, "birthDate": "1977-07-07" }))
        .await;
    app.gql(
        Some(&admin),
        "query($id: UUID!) { patient(id: $id) { name } }",
        json!({ "id": id }),
    )
    .await
    .data();
    app.gql(
        Some(&admin),
        "{ patients(search: \"zebulon\") { edges { node { id } } } }",
        json!({}),
    )
    .await
    .data();
    app.gql(
        Some(&admin),
        "mutation($id: UUID!) { updatePatient(id: $id, input: { phone: \"+15550000000\" }) { id } }",
        json!({ "id": id }),
    )
    .await
    .data();
    let db = &app.app.services.db;
    let count = |action: &'static str| async move {
        entity::audit_log::Entity::find()
            .filter(entity::audit_log::Column::Action.eq(action))
            .filter(entity::audit_log::Column::EntityType.eq("patient"))
            .count(db)
            .await
            .expect("count")
    };
    assert_eq!(count("create").await, 1);
    assert_eq!(count("read").await, 1);
    assert_eq!(count("search").await, 1);
    assert_eq!(count("update").await, 1);
    let read = entity::audit_log::Entity::find()
        .filter(entity::audit_log::Column::Action.eq("read"))
        .one(db)
        .await
        .expect("query")
        .expect("a read record");
    assert_eq!(read.entity_id.map(|u| u.to_string()), Some(id));
    assert_eq!(read.actor_role.as_deref(), Some("ADMIN"));
    // A denied read is not a read: a patient asking for someone else gets null and no record.

    // Append-only: the database refuses to change or remove a record.
    let backend = db.get_database_backend();
    let update = db
        .execute_raw(Statement::from_string(backend, "UPDATE audit_log SET action = 'x'"))
        .await;
    assert!(update.is_err(), "audit_log accepted an UPDATE");
    let delete = db
        .execute_raw(Statement::from_string(backend, "DELETE FROM audit_log"))
        .await;
    assert!(delete.is_err(), "audit_log accepted a DELETE");
}

async fn internal_errors_carry_no_detail(app: &TestApp) {
    let admin = app.admin().await;
    let id = app
        .create_patient(&admin, json!({ "name": NAME, "birthDate": "1977-07-07" }))
        .await;
    // Damage the ciphertext behind the API's back: decryption must fail closed.
    entity::patient::Entity::update_many()
        .col_expr(
            entity::patient::Column::NameEnc,
            sea_orm::sea_query::Expr::value(vec![1u8; 40]),
        )
        .exec(&app.app.services.db)
        .await
        .expect("corrupt");
    let response = app
        .gql(
            Some(&admin),
            "query($id: UUID!) { patient(id: $id) { name } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(response.code(), "INTERNAL");
    assert_eq!(response.message(), "internal error");
    assert_eq!(
        response.0["errors"][0]["extensions"].as_object().map(|e| e.len()),
        Some(1),
        "{}",
        response.0
    );
}

async fn probes_answer(app: &TestApp) {
    let get = |path: &'static str| {
        axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request")
    };
    assert_eq!(app.send(get("/healthz")).await, (200, Value::String("ok".into())));
    let (status, ready) = app.send(get("/readyz")).await;
    assert_eq!(status, 200);
    assert_eq!(ready, json!({ "database": true, "replica": true, "bus": true }));
    app.app.services.db.clone().close().await.expect("close pool");
    let (status, ready) = app.send(get("/readyz")).await;
    assert_eq!((status, &ready["database"]), (503, &json!(false)));
}

on_both_databases!(
    phi_is_never_stored_in_plaintext,
    every_phi_read_and_write_is_audited,
    internal_errors_carry_no_detail,
    probes_answer,
);

#[tokio::test]
async fn huge_and_deep_queries_are_refused() {
    // Aliases allowed freely here, so that the complexity limit is what trips.
    let app = TestApp::spawn_with(
        careslot_tests::Backend::Sqlite,
        &[("CARESLOT_GRAPHQL_MAX_ALIASES", "100000")],
    )
    .await;
    let admin = app.admin().await;
    let aliases: String = (0..3000)
        .map(|i| format!("a{i}: locations {{ id name timeZone }} "))
        .collect();
    let complex = app.gql(Some(&admin), &format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(complex.code(), "BAD_USER_INPUT");
    assert!(complex.message().contains("complex"), "{}", complex.message());
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(20),
        "} ".repeat(20)
    );
    let deep = app.gql(Some(&admin), &deep, json!({})).await;
    assert_eq!(deep.code(), "BAD_USER_INPUT");
    let (status, _) = app
        .post_json(
            "/graphql",
            Some(&admin),
            &json!({ "query": "{ me { id } }", "padding": "x".repeat(300 * 1024) }),
        )
        .await;
    // The body limit trips inside the GraphQL extractor, which answers 400.
    assert!(status == 413 || status == 400, "oversized body answered {status}");
    let garbage = app.gql(Some(&admin), "{ me { id ", json!({})).await;
    assert_eq!(garbage.code(), "BAD_USER_INPUT");
    let unknown = app.gql(Some(&admin), "{ nope }", json!({})).await;
    assert_eq!(unknown.code(), "BAD_USER_INPUT");
}

#[tokio::test]
async fn aliases_and_batches_are_bounded() {
    let app = TestApp::spawn(careslot_tests::Backend::Sqlite).await;
    let admin = app.admin().await;
    let aliased = |n: usize| {
        format!(
            "{{ {} }}",
            (0..n).map(|i| format!("a{i}: me {{ id }} ")).collect::<String>()
        )
    };
    let within = app.gql(Some(&admin), &aliased(30), json!({})).await;
    assert_eq!(within.data()["a29"]["id"], within.data()["a0"]["id"]);
    let over = app.gql(Some(&admin), &aliased(31), json!({})).await;
    assert_eq!(over.code(), "BAD_USER_INPUT");
    assert!(over.message().contains("too many aliases"), "{}", over.message());
    // Cheap fields are the point: 31 logins in one request stay refused even
    // though their complexity is far below the limit.
    let logins: String = (0..31)
        .map(|i| format!("l{i}: login(email: \"admin@clinic.test\", password: \"guess {i}\") {{ accessToken }} "))
        .collect();
    let brute = app.gql(None, &format!("mutation {{ {logins} }}"), json!({})).await;
    assert_eq!(brute.code(), "BAD_USER_INPUT");
    // A batch (a JSON array of requests) is not accepted: one request, one operation.
    let (status, body) = app
        .post_json(
            "/graphql",
            Some(&admin),
            &json!([{ "query": "{ me { id } }" }, { "query": "{ me { id } }" }]),
        )
        .await;
    assert!((400..500).contains(&status), "a batch answered {status}: {body}");
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .expect("socket open")
            .expect("valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("json"),
            Message::Close(frame) => return json!({ "type": "close", "code": frame.map(|f| u16::from(f.code)) }),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn websocket_speaks_both_protocols_and_requires_a_token() {
    let app = TestApp::spawn(careslot_tests::Backend::Sqlite).await;
    let addr = app.serve().await;
    let token = app.admin().await;
    let provider = uuid::Uuid::new_v4();
    let subscription = json!({
        "query": "subscription($p: UUID!) { slotsChanged(providerId: $p, from: \"2026-12-01T00:00:00Z\", to: \"2026-12-02T00:00:00Z\") { providerId start status reason } }",
        "variables": { "p": provider },
    });
    for (protocol, subscribe, data) in [
        ("graphql-transport-ws", "subscribe", "next"),
        ("graphql-ws", "start", "data"),
    ] {
        let mut socket = connect(addr, protocol).await;
        socket
            .send(Message::text(
                json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } })
                    .to_string(),
            ))
            .await
            .expect("send");
        assert_eq!(next_json(&mut socket).await["type"], "connection_ack", "{protocol}");
        socket
            .send(Message::text(
                json!({ "id": "1", "type": subscribe, "payload": subscription }).to_string(),
            ))
            .await
            .expect("send");
        // Give the subscription a moment to attach to the bus before publishing.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let at = |h: u32| {
            chrono::DateTime::parse_from_rfc3339(&format!("2026-12-01T{h:02}:00:00Z"))
                .expect("time")
                .to_utc()
        };
        for (p, hour) in [(uuid::Uuid::new_v4(), 9), (provider, 10)] {
            app.app
                .services
                .bus
                .publish(DomainEvent::Slot(SlotEvent {
                    provider_id: p.into(),
                    start: at(hour),
                    end: at(hour + 1),
                    status: SlotStatus::Busy,
                    reason: SlotChangeReason::Booked,
                }))
                .await;
        }
        let event = next_json(&mut socket).await;
        assert_eq!(event["type"], data, "{protocol}: {event}");
        let payload = &event["payload"]["data"]["slotsChanged"];
        assert_eq!(
            payload["providerId"],
            provider.to_string(),
            "only the subscribed provider's event arrives"
        );
        assert_eq!(
            (payload["status"].as_str(), payload["reason"].as_str()),
            (Some("BUSY"), Some("BOOKED"))
        );
    }

    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut socket = connect(addr, protocol).await;
        socket
            .send(Message::text(
                json!({ "type": "connection_init", "payload": { "authorization": "Bearer forged" } }).to_string(),
            ))
            .await
            .expect("send");
        let refused = next_json(&mut socket).await;
        assert!(
            refused["type"] == "close" || refused["type"] == "connection_error",
            "{protocol}: {refused}"
        );
    }
}
