//! The real `careslot-worker` binary: starts on the embedded database with no
//! other configuration, serves `/healthz` and `/metrics` on its metrics
//! listener, and exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn starts_and_stops_cleanly_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("careslot-worker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let mut child = Command::new(env!("CARGO_BIN_EXE_careslot-worker"))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CARESLOT_DATA_DIR", dir.join("data"))
        .env("RUST_LOG", "info")
        .env("CARESLOT_WORKER_METRICS_LISTEN", metrics_addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("worker started")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("careslot-worker did not start within 60 s: {log:#?}");
            }
        }
    }
    let healthz = http_get(metrics_addr, "/healthz");
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    // The sampler's first look at the queue runs alongside start-up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = http_get(metrics_addr, "/metrics");
        if metrics.contains("careslot_jobs_queue_depth") || Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !metrics.starts_with("HTTP/1.1 200") || !metrics.contains("careslot_jobs_queue_depth") {
        let _ = child.kill();
        panic!("{metrics}");
    }
    assert!(metrics.contains("\ncareslot_worker_up 1\n"), "{metrics}");
    for state in ["pending", "running", "dead"] {
        assert!(
            metrics.contains(&format!("careslot_jobs_queue_depth{{state=\"{state}\"}} 0")),
            "{metrics}"
        );
    }
    assert!(metrics.contains("careslot_db_pool_max_connections 1"), "{metrics}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("careslot-worker did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
        log.push(line);
    }
    assert!(exit.success(), "exit {exit:?}: {log:#?}");
    assert!(log.iter().any(|l| l.contains("worker stopped")), "{log:#?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// One HTTP/1.1 GET, answered whole (the listener closes after it).
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n"
    )
    .expect("writes");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("reads");
    answer
}
