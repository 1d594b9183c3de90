//! The suite's smoke mode as a test, so `cargo test --workspace` covers it:
//! every scenario runs for a moment against the real `careslot-api`, real
//! PostgreSQL and Redis, and every correctness check must hold. Speed is not
//! judged here (targets are for the full run on a quiet machine).

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn smoke_mode_runs_every_scenario_and_each_stays_correct() {
    let bench = Path::new(env!("CARGO_BIN_EXE_careslot-bench"));
    // `cargo test --workspace` builds careslot-api beside it (the api crate has
    // integration tests, so its binary is built for them).
    let bin_dir = bench.parent().expect("the bench binary has a folder");
    assert!(
        bin_dir.join("careslot-api").is_file(),
        "{} has no careslot-api: build the workspace (cargo test --workspace builds it)",
        bin_dir.display()
    );
    let out = std::env::temp_dir().join(format!("careslot-bench-smoke-{}", std::process::id()));
    let started = Instant::now();
    let output = Command::new(bench)
        .args(["--smoke", "--out"])
        .arg(&out)
        .arg("--bin-dir")
        .arg(bin_dir)
        .output()
        .expect("careslot-bench runs");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "smoke run failed:\n{log}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the smoke run took {:?}; it should stay near a minute:\n{log}",
        started.elapsed()
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json written")).expect("JSON");
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(scenarios.len(), 7, "every scenario reported: {names:?}");
    for scenario in scenarios {
        let checks = scenario["checks"].as_array().expect("checks");
        assert!(!checks.is_empty(), "{} checks something", scenario["name"]);
        for check in checks {
            assert_eq!(check["ok"], true, "{}: {}", scenario["name"], check);
        }
    }
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .expect("report.md")
            .contains("| metric | target |")
    );
    let _ = std::fs::remove_dir_all(&out);
}
