//! Integrity of patient data: the audit log is a hash chain that reveals an
//! edited or deleted record, and PHI keys rotate without losing a record.

use careslot_tests::{Backend, TestApp, on_both_databases};
use domain::phi::{ChainCheck, verify_chain};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, Statement};
use serde_json::json;

async fn the_audit_chain_reveals_edits_and_deletions(app: &TestApp) {
    let admin = app.admin().await;
    let id = app
        .create_patient(&admin, json!({ "name": "Chain Checked", "birthDate": "1980-01-01" }))
        .await;
    for _ in 0..3 {
        app.gql(
            Some(&admin),
            "query($id: UUID!) { patient(id: $id) { name } }",
            json!({ "id": id }),
        )
        .await
        .data();
    }
    let db = &app.app.services.db;
    let intact = verify_chain(db).await.expect("verify");
    assert!(
        matches!(intact, ChainCheck::Intact { records } if records >= 4),
        "{intact:?}"
    );

    // Someone with database rights bypasses the append-only triggers...
    let backend = db.get_database_backend();
    let run = |sql: &str| db.execute_raw(Statement::from_string(backend, sql.to_owned()));
    match backend {
        DbBackend::Postgres => {
            run("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
                .await
                .expect("disable trigger");
        }
        _ => {
            run("DROP TRIGGER audit_log_no_update").await.expect("drop trigger");
            run("DROP TRIGGER audit_log_no_delete").await.expect("drop trigger");
        }
    }
    // ...and rewrites who read the record: the chain shows where.
    run("UPDATE audit_log SET actor_role = 'STAFF' WHERE seq = 2")
        .await
        .expect("tamper");
    let edited = verify_chain(db).await.expect("verify");
    assert!(
        matches!(&edited, ChainCheck::Broken { seq: 2, reason } if reason.contains("edited")),
        "{edited:?}"
    );
    run("UPDATE audit_log SET actor_role = 'ADMIN' WHERE seq = 2")
        .await
        .expect("restore");
    assert!(matches!(
        verify_chain(db).await.expect("verify"),
        ChainCheck::Intact { .. }
    ));
    run("DELETE FROM audit_log WHERE seq = 3").await.expect("delete");
    let deleted = verify_chain(db).await.expect("verify");
    assert!(
        matches!(&deleted, ChainCheck::Broken { seq: 3, reason } if reason.contains("missing")),
        "{deleted:?}"
    );
}

async fn admins_read_the_trail_and_that_reading_is_recorded(app: &TestApp) {
    let admin = app.admin().await;
    let id = app
        .create_patient(&admin, json!({ "name": "Trail Read", "birthDate": "1980-01-01" }))
        .await;
    app.gql(
        Some(&admin),
        "query($id: UUID!) { patient(id: $id) { name } }",
        json!({ "id": id }),
    )
    .await
    .data();
    let query = "query($f: AuditEventFilter) { auditEvents(filter: $f, first: 10) { edges { node { seq action entityType entityId actorRole hash } } pageInfo { hasNextPage } } }";
    let trail = app.gql(Some(&admin), query, json!({ "f": { "entityId": id } })).await;
    let actions: Vec<&str> = trail.data()["auditEvents"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["read", "create"], "newest first");
    let newest = &trail.data()["auditEvents"]["edges"][0]["node"];
    assert_eq!(
        (newest["entityType"].as_str(), newest["actorRole"].as_str()),
        (Some("patient"), Some("ADMIN"))
    );
    assert_eq!(newest["hash"].as_str().map(str::len), Some(64));
    // The listing itself went into the trail.
    let about_trail = app
        .gql(Some(&admin), query, json!({ "f": { "entityType": "audit_log" } }))
        .await;
    assert_eq!(
        about_trail.data()["auditEvents"]["edges"][0]["node"]["action"],
        "search"
    );
}

/// The database lets the chainer fill the chain columns of an unchained
/// record once, and refuses every other change.
async fn the_database_allows_linking_a_record_once_and_nothing_else(app: &TestApp) {
    let admin = app.admin().await;
    app.create_patient(&admin, json!({ "name": "Link Once", "birthDate": "1980-01-01" }))
        .await;
    let db = &app.app.services.db;
    let backend = db.get_database_backend();
    let run = |sql: String| db.execute_raw(Statement::from_string(backend, sql));
    let unchained = || async {
        entity::audit_log::Entity::find()
            .filter(entity::audit_log::Column::Seq.is_null())
            .all(db)
            .await
            .expect("rows")
    };
    let pending = unchained().await;
    assert!(!pending.is_empty(), "a write's record starts unchained");
    let id = match backend {
        DbBackend::Postgres => format!("'{}'", pending[0].id),
        // SeaORM stores a UUID as a 16-byte blob on SQLite.
        _ => format!("X'{}'", pending[0].id.simple()),
    };

    // An unchained record can be neither rewritten, nor deleted, nor linked while rewritten.
    for tamper in [
        format!("UPDATE audit_log SET actor_role = 'PATIENT' WHERE id = {id}"),
        format!("UPDATE audit_log SET seq = 999, prev_hash = 'x', hash = 'y', action = 'read' WHERE id = {id}"),
        format!("UPDATE audit_log SET seq = 999 WHERE id = {id}"),
        format!("DELETE FROM audit_log WHERE id = {id}"),
    ] {
        let refused = run(tamper.clone()).await.expect_err(&tamper);
        assert!(refused.to_string().contains("append-only"), "{tamper}: {refused}");
    }

    assert_eq!(
        domain::phi::chain_pending(db).await.expect("chain") as usize,
        pending.len()
    );
    assert!(unchained().await.is_empty(), "every committed record is linked");
    // A linked record cannot be linked again.
    let relink = format!("UPDATE audit_log SET seq = 999, prev_hash = 'x', hash = 'y' WHERE id = {id}");
    let refused = run(relink).await.expect_err("relink");
    assert!(refused.to_string().contains("append-only"), "{refused}");
    assert!(matches!(
        verify_chain(db).await.expect("verify"),
        ChainCheck::Intact { .. }
    ));
}

on_both_databases!(
    the_audit_chain_reveals_edits_and_deletions,
    admins_read_the_trail_and_that_reading_is_recorded,
    the_database_allows_linking_a_record_once_and_nothing_else
);

/// Audited writes no longer wait for one another; chainers running at the same
/// time as writers still build one chain with no gap, fork or record left out.
#[tokio::test]
async fn concurrent_writers_and_chainers_build_one_intact_chain() {
    use domain::phi::{AuditAction, AuditRecord, RequestMeta, chain_pending, write_audits};
    let app = TestApp::spawn(Backend::Postgres).await;
    let services = app.app.services.clone();
    const WRITERS: usize = 16;
    const WRITES: usize = 25;
    let writers = (0..WRITERS).map(|_| {
        let services = services.clone();
        tokio::spawn(async move {
            for n in 0..WRITES {
                let txn = sea_orm::TransactionTrait::begin(&services.db).await.expect("begin");
                let records = (0..=n % 3)
                    .map(|_| AuditRecord {
                        action: AuditAction::Read,
                        entity_type: "patient",
                        entity_id: Some(uuid::Uuid::now_v7()),
                        detail: None,
                    })
                    .collect();
                write_audits(&txn, services.clock.as_ref(), None, &RequestMeta::default(), records)
                    .await
                    .expect("write");
                txn.commit().await.expect("commit");
            }
        })
    });
    let writers: Vec<_> = writers.collect();
    let chainers: Vec<_> = (0..3)
        .map(|_| {
            let services = services.clone();
            tokio::spawn(async move {
                let mut linked = 0;
                for _ in 0..20 {
                    linked += chain_pending(&services.db).await.expect("chain");
                    tokio::task::yield_now().await;
                }
                linked
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let mut linked = 0;
    for chainer in chainers {
        linked += chainer.await.expect("chainer");
    }
    linked += chain_pending(&services.db).await.expect("final chain");
    let total = entity::audit_log::Entity::find()
        .all(&services.db)
        .await
        .expect("rows")
        .len() as u64;
    // Each write n adds n % 3 + 1 records.
    let written = (WRITERS * (0..WRITES).map(|n| n % 3 + 1).sum::<usize>()) as u64;
    assert!(total >= written, "{total} rows, {written} written");
    assert_eq!(linked, total, "every record linked exactly once");
    assert_eq!(
        verify_chain(&services.db).await.expect("verify"),
        ChainCheck::Intact { records: total }
    );
}

/// The worker's chainer links records without anyone asking.
#[tokio::test]
async fn the_worker_links_new_records_in_the_background() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let admin = app.admin().await;
    app.create_patient(&admin, json!({ "name": "Background Link", "birthDate": "1980-01-01" }))
        .await;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(workers::run_audit_chainer(
        app.app.services.clone(),
        std::time::Duration::from_millis(20),
        shutdown,
    ));
    let unchained = || async {
        entity::audit_log::Entity::find()
            .filter(entity::audit_log::Column::Seq.is_null())
            .count(&app.app.services.db)
            .await
            .expect("count")
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while unchained().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "records still unchained after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.send(true).expect("stop");
    task.await.expect("chainer stops on shutdown");
}

const K1: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const K2: &str = "k2:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";

#[tokio::test]
async fn phi_keys_rotate_without_losing_a_record() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let admin = app.admin().await;
    let patient = app
        .create_patient(&admin, json!({ "name": "Rota Tion", "birthDate": "1975-05-05", "email": "rota@x.org", "phone": "+15559990000", "password": "long enough password" }))
        .await;
    let url = app.database_url().expect("postgres").to_owned();

    // A second deployment step: k2 added as the newest key, k1 still configured.
    let both = format!("{K1},{K2}");
    let settings = |keys: &str| {
        domain::settings::Settings::for_tests(&[
            ("DATABASE_URL", url.as_str()),
            ("CARESLOT_JWT_SECRET", "test-secret-test-secret-test-secret-0123"),
            ("CARESLOT_PHI_KEYS", keys),
            ("CARESLOT_PHI_INDEX_KEY", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="),
        ])
        .expect("settings")
    };
    let options = || api::app::AppOptions {
        fast_password_hashing: true,
        ..api::app::AppOptions::default()
    };
    let step = api::app::App::build(settings(&both), options())
        .await
        .expect("app with two keys");
    let done = step.services.rotate_phi_keys(1).await.expect("rotation");
    assert_eq!(
        (done.patients, done.users),
        (1, 2),
        "the patient, and both sign-ins (admin and patient)"
    );
    assert_eq!(
        step.services.rotate_phi_keys(1).await.expect("rerun"),
        domain::phi::Rotation::default(),
        "nothing left to do"
    );
    for row in entity::patient::Entity::find()
        .all(&step.services.db)
        .await
        .expect("rows")
    {
        assert_eq!(row.phi_key_id, "k2");
    }

    // k1 can now be retired: everything still reads, and sign-in still finds the patient.
    let after = api::app::App::build(settings(K2), options())
        .await
        .expect("app with k2 only");
    let caller = domain::Caller::default();
    let session = after
        .services
        .login(&caller, "rota@x.org", "long enough password")
        .await
        .expect("sign-in");
    let read = after
        .services
        .patient(
            &domain::Caller::system(domain::auth::AccessClaims::actor(
                &after
                    .services
                    .tokens
                    .verify(&session.access_token, chrono::Utc::now())
                    .expect("token"),
            )),
            patient.parse::<uuid::Uuid>().expect("uuid").into(),
        )
        .await
        .expect("read")
        .expect("visible to themself");
    assert_eq!(
        (read.name.as_str(), read.email.as_deref(), read.phone.as_deref()),
        ("Rota Tion", Some("rota@x.org"), Some("+15559990000"))
    );
}
