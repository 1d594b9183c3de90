//! `DATABASE_REPLICA_URL`: slot search and lists read a real PostgreSQL
//! streaming replica; writes and read-after-write lookups stay on the primary;
//! a stale search can never double-book.
//!
//! The test runs its own primary and replica (initdb, pg_basebackup -R) from
//! the machine's PostgreSQL binaries on free ports, so that it can pause the
//! replica's replay and see which reads go where.

mod common;

use common::{INDEX, JWT, PHI};

use common::{Server, free_port, set_up};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup).
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("PostgreSQL server binaries are needed under {}: {e}", root.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("initdb under /usr/lib/postgresql/*/bin")
}

/// Runs a PostgreSQL tool as the `postgres` user (the server refuses root).
fn as_postgres(tool: &str, args: &[&str]) {
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin_dir().join(tool))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(status.success(), "{tool} {args:?} failed");
}

/// One private PostgreSQL server in a folder of the test's.
struct Cluster {
    data: PathBuf,
    port: u16,
}

impl Cluster {
    fn start(data: PathBuf, port: u16) -> Self {
        let socket_dir = data.parent().expect("parent").display().to_string();
        let options = format!("-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off");
        let log = data.with_extension("log").display().to_string();
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
        Self { data, port }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn sql(&self, statement: &str) -> String {
        let output = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-tAc",
                statement,
            ])
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "{statement}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin_dir().join("pg_ctl"))
            .args(["-D", &self.data.display().to_string(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A primary and a streaming replica of it.
fn primary_and_replica(dir: &Path) -> (Cluster, Cluster) {
    let chown = Command::new("chown")
        .args(["postgres:", &dir.display().to_string()])
        .status();
    assert!(chown.is_ok_and(|s| s.success()), "chown of the test folder");
    let primary_dir = dir.join("primary");
    as_postgres(
        "initdb",
        &[
            "-D",
            &primary_dir.display().to_string(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ],
    );
    let primary = Cluster::start(primary_dir, free_port());
    let replica_dir = dir.join("replica");
    as_postgres(
        "pg_basebackup",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-D",
            &replica_dir.display().to_string(),
            "-R",
            "-X",
            "stream",
            "--no-sync",
        ],
    );
    let replica = Cluster::start(replica_dir, free_port());
    assert_eq!(
        replica.sql("select pg_is_in_recovery()"),
        "t",
        "the replica is a standby"
    );
    (primary, replica)
}

/// Waits until the replica has replayed everything the primary wrote so far.
fn caught_up(primary: &Cluster, replica: &Cluster) {
    let target = primary.sql("select pg_current_wal_lsn()");
    let deadline = Instant::now() + Duration::from_secs(20);
    while replica.sql(&format!("select pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")) != "t" {
        assert!(Instant::now() < deadline, "the replica did not catch up within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const APPOINTMENTS: &str = "{ appointments(filter: {}) { edges { node { id } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_and_lists_read_the_replica_and_bookings_the_primary() {
    let dir = tempfile::tempdir().expect("tmp");
    let (primary, replica) = primary_and_replica(dir.path());
    let secrets = [
        ("CARESLOT_JWT_SECRET", JWT),
        ("CARESLOT_PHI_KEYS", PHI),
        ("CARESLOT_PHI_INDEX_KEY", INDEX),
    ];
    let primary_url = primary.url();
    let replica_url = replica.url();
    let mut env: Vec<(&str, &str)> = secrets.to_vec();
    env.push(("DATABASE_URL", &primary_url));
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    // The clinic is set up on the primary alone, then the replica catches up.
    let plain = Server::start(dir_a.path(), &env).await;
    let s = set_up(&plain).await;
    plain.terminate();
    caught_up(&primary, &replica);

    env.push(("DATABASE_REPLICA_URL", &replica_url));
    let routed = Server::start(dir_b.path(), &env).await;
    let ready: serde_json::Value = careslot_tests::http()
        .get(format!("{}/readyz", routed.base))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["replica"], true, "{ready}");
    let admin = routed.admin_token().await;
    let slots_query = "query($i: AvailableSlotsInput!) { availableSlots(input: $i) { start } }";
    let (from, to) = common::tomorrow();
    let slots_input = json!({ "i": { "providerId": s.provider, "appointmentTypeId": s.kind, "from": from, "to": to } });
    let offered = |data: &serde_json::Value| {
        data["availableSlots"]
            .as_array()
            .expect("slots")
            .iter()
            .any(|slot| slot["start"] == s.slot.as_str())
    };
    assert!(offered(&routed.data(&admin, slots_query, slots_input.clone()).await));

    // With the replica's replay paused, a booking commits on the primary...
    replica.sql("select pg_wal_replay_pause()");
    let book = "mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id } }";
    let input = json!({ "i": { "providerId": s.provider, "patientId": s.patient, "appointmentTypeId": s.kind, "start": s.slot } });
    let booked = routed.data(&admin, book, input.clone()).await;
    let id = booked["bookAppointment"]["id"].as_str().expect("id").to_owned();
    // ...reading it back by id sees it (the primary)...
    let by_id = routed
        .data(
            &admin,
            "query($id: UUID!) { appointment(id: $id) { id status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(by_id["appointment"]["status"], "BOOKED");
    // ...while the list and the slot search read the paused replica.
    let listed = routed.data(&admin, APPOINTMENTS, json!({})).await;
    assert_eq!(listed["appointments"]["edges"], json!([]), "the list reads the replica");
    assert!(
        offered(&routed.data(&admin, slots_query, slots_input.clone()).await),
        "the search reads the replica, which has not seen the booking"
    );
    // A stale search cannot double-book: the booking re-checks on the primary.
    let again = routed.gql(Some(&admin), book, input).await;
    assert_eq!(again["errors"][0]["extensions"]["code"], "SLOT_UNAVAILABLE", "{again}");

    replica.sql("select pg_wal_replay_resume()");
    caught_up(&primary, &replica);
    let listed = routed.data(&admin, APPOINTMENTS, json!({})).await;
    assert_eq!(listed["appointments"]["edges"][0]["node"]["id"], id.as_str());
    assert!(!offered(&routed.data(&admin, slots_query, slots_input).await));
    routed.terminate();
}

#[test]
fn a_replica_url_that_is_not_postgres_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let output = common::command(dir.path(), &[("DATABASE_REPLICA_URL", "sqlite://replica.db")])
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_REPLICA_URL"), "{stderr}");
}
