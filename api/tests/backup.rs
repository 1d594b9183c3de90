//! deploy/backup/pg-backup and pg-restore on a database with appointments made
//! through the API: the restored copy has the same tables, the same rows
//! (compared by count and content digest) and an intact audit chain
//! (`careslot-api verify-audit` against it). pg_dump, pg_restore and psql are
//! required (PostgreSQL's client package): the test fails without them.

mod common;

use common::{INDEX, JWT, PHI};

use careslot_tests::postgres::TestDatabase;
use common::{Server, book, set_up};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/backup")
        .join(name)
}

/// Runs psql with one query and answers its unaligned, tuples-only output.
fn psql(url: &str, query: &str) -> String {
    let output = Command::new("psql")
        .args([
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
            "-F",
            "\t",
            "-d",
            url,
            "-c",
            query,
        ])
        .output()
        .expect("psql is required for this test");
    assert!(
        output.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Every table of the public schema: (row count, digest of all rows in order).
fn snapshot(url: &str) -> BTreeMap<String, (u64, String)> {
    let tables = psql(
        url,
        "select tablename from pg_tables where schemaname = 'public' order by 1",
    );
    tables
        .lines()
        .map(|table| {
            let row = psql(
                url,
                &format!(
                    "select count(*), md5(coalesce(string_agg(t::text, E'\\n' order by t::text), '')) from public.\"{table}\" t"
                ),
            );
            let (count, digest) = row.split_once('\t').expect("count and digest");
            (table.to_owned(), (count.parse().expect("count"), digest.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_an_identical_database_with_an_intact_audit_chain() {
    let source = TestDatabase::create().await;
    let env = [
        ("DATABASE_URL", source.url.as_str()),
        ("CARESLOT_JWT_SECRET", JWT),
        ("CARESLOT_PHI_KEYS", PHI),
        ("CARESLOT_PHI_INDEX_KEY", INDEX),
    ];
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(dir.path(), &env).await;
    let s = set_up(&server).await;
    let first = book(&server, &s).await;
    server
        .data(
            &s.admin,
            "mutation($id: UUID!) { cancelAppointment(id: $id, reason: \"moved\") { status } }",
            json!({ "id": first }),
        )
        .await;
    book(&server, &s).await;
    // A read of PHI is audited too.
    server
        .data(
            &s.admin,
            "query($id: UUID!) { patient(id: $id) { name } }",
            json!({ "id": s.patient }),
        )
        .await;

    // Backed up while the server runs, as in production.
    let backups = dir.path().join("backups");
    let output = Command::new(script("pg-backup"))
        .args([source.url.as_str(), backups.to_str().expect("utf-8 path")])
        .env("CARESLOT_BACKUP_KEEP_DAYS", "14")
        .output()
        .expect("pg-backup runs");
    assert!(
        output.status.success(),
        "pg-backup: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let archive = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(archive.is_file(), "pg-backup printed {archive:?}");
    assert!(Path::new(&format!("{}.sha256", archive.display())).is_file());
    let before = snapshot(&source.url);
    let (status, _) = server.terminate();
    assert!(status.success());

    let target = TestDatabase::create().await;
    let restore = |url: &str| {
        Command::new(script("pg-restore"))
            .args([archive.to_str().expect("utf-8 path"), url])
            .output()
            .expect("pg-restore runs")
    };
    let output = restore(&target.url);
    assert!(
        output.status.success(),
        "pg-restore: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after = snapshot(&target.url);

    // Same tables, same rows.
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    for (table, expected) in &before {
        assert_eq!(&after[table], expected, "table {table} differs after restore");
    }
    let rows = |name: &str| before.get(name).map(|(count, _)| *count).unwrap_or(0);
    assert!(rows("appointments") >= 2, "{before:?}");
    assert!(rows("patients") >= 1, "{before:?}");
    let audit_rows = rows("audit_log");
    assert!(audit_rows > 0, "no audit records in {before:?}");

    // The restored audit chain verifies with the real command.
    let verify = common::command(
        dir.path(),
        &[
            ("DATABASE_URL", target.url.as_str()),
            ("CARESLOT_JWT_SECRET", JWT),
            ("CARESLOT_PHI_KEYS", PHI),
            ("CARESLOT_PHI_INDEX_KEY", INDEX),
        ],
    )
    .arg("verify-audit")
    .output()
    .expect("verify-audit runs");
    let said = String::from_utf8_lossy(&verify.stdout).into_owned() + &String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{said}");
    assert!(
        said.contains(&format!("audit chain intact: {audit_rows} records")),
        "{said}"
    );

    // A second restore into the now non-empty database is refused. (verify-audit
    // linked the records the backup caught unchained: compare with what is there now.)
    let after = snapshot(&target.url);
    let again = restore(&target.url);
    assert!(
        !again.status.success(),
        "pg-restore mixed a backup into a database with tables"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty database"));
    assert_eq!(snapshot(&target.url), after, "a refused restore changed nothing");
}

/// deploy/backup/pitr-drill: WAL archived with deploy/postgres/archiving.conf
/// and a base backup recover a throwaway cluster to a chosen moment, undoing
/// a later change (OPERATIONS.md, "Point-in-time recovery").
#[test]
fn point_in_time_recovery_reaches_the_target_time() {
    let output = Command::new(script("pitr-drill")).output().expect("pitr-drill runs");
    let said = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("pitr-drill: ok"), "{said}");
}
