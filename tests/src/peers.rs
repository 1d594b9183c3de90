//! Real peers for the worker's tests, started by the test itself on a free
//! loopback port and killed when dropped: an SMTP server (PyPI `aiosmtpd`,
//! with the handlers in `tests/peers/careslot_smtp.py`) and Prism serving
//! Twilio's own OpenAPI description (npm `@stoplight/prism-cli` and the spec
//! from `@twilio-alpha/mcp`, installed by `.ci/run` under
//! `CARESLOT_PEERS_DIR`, default `$HOME/.cache/careslot-peers`). A peer that
//! cannot be started fails the test: it never skips.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `.ci/run` installs the peers' tools.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("CARESLOT_PEERS_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/careslot-peers")
        },
        PathBuf::from,
    )
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A peer process, killed on drop.
pub struct Peer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    name: &'static str,
}

impl Peer {
    fn spawn(name: &'static str, mut command: Command, port: u16, within: Duration) -> Self {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name} ({command:?}): {e}; run .ci/run to install the test peers")
            });
        let mut peer = Self { child, port, name };
        let deadline = Instant::now() + within;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return peer;
            }
            if let Ok(Some(status)) = peer.child.try_wait() {
                panic!(
                    "{name} exited with {status} before answering on port {port}; run .ci/run to install the test peers"
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not answer on port {port} within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("warning: could not stop {}: {e}", self.name);
        }
        let _ = self.child.wait();
    }
}

fn aiosmtpd(handler: &str, argument: &str) -> (Command, u16) {
    let port = free_port();
    let handlers = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers");
    let mut command = Command::new("python3");
    command
        .env("PYTHONPATH", handlers)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c"])
        .arg(format!("careslot_smtp.{handler}"))
        .arg(argument);
    (command, port)
}

/// An SMTP server (aiosmtpd) that accepts everything into a folder.
pub struct SmtpServer {
    /// The process.
    pub peer: Peer,
    /// Where messages land (`<n>.eml`, decoded calendars as `<n>-<k>.ics`).
    pub dir: PathBuf,
}

impl SmtpServer {
    /// Starts one.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("careslot-smtp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("mail dir");
        let (command, port) = aiosmtpd("Store", &dir.display().to_string());
        Self {
            peer: Peer::spawn("aiosmtpd", command, port, Duration::from_secs(30)),
            dir,
        }
    }

    /// The messages received so far, in arrival order.
    pub fn messages(&self) -> Vec<String> {
        let mut numbered: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)
            .expect("mail dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
            .collect();
        numbered.sort();
        numbered
            .into_iter()
            .map(|(_, p)| std::fs::read_to_string(p).expect("message"))
            .collect()
    }

    /// The calendars attached to message number `n` (1-based), decoded.
    pub fn calendars(&self, n: usize) -> Vec<String> {
        (1..)
            .map(|k| self.dir.join(format!("{n}-{k}.ics")))
            .take_while(|p| p.exists())
            .map(|p| std::fs::read_to_string(p).expect("calendar"))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An SMTP server (aiosmtpd) that answers every recipient with `code`.
pub fn refusing_smtp(code: u16) -> Peer {
    let (command, port) = aiosmtpd("Refuse", &code.to_string());
    Peer::spawn("aiosmtpd (refusing)", command, port, Duration::from_secs(30))
}

/// Prism serving Twilio's Messages API from Twilio's OpenAPI description.
pub fn prism_twilio() -> Peer {
    let dir = peers_dir();
    let prism = dir.join("node_modules/.bin/prism");
    let spec = dir.join("twilio_api_v2010.yaml");
    assert!(
        prism.exists() && spec.exists(),
        "Prism or the Twilio spec is missing under {} (CARESLOT_PEERS_DIR): run .ci/run",
        dir.display()
    );
    let port = free_port();
    let mut command = Command::new(prism);
    command
        .args(["mock", "-h", "127.0.0.1", "-p", &port.to_string()])
        .arg(spec);
    Peer::spawn("prism", command, port, Duration::from_secs(90))
}

/// An SMTP "server" that accepts connections and never says a word, like a
/// peer that hangs: a send to it blocks until its timeout. It counts the
/// connections it took, so a test knows when a worker is inside its sends.
pub struct SilentServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentServer {
    /// Starts one: a thread accepts every connection and keeps it open, silent.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut open = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                open.push(stream);
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Self { port, accepted }
    }

    /// Waits (up to 5 s) until `n` clients have connected: each is a send
    /// started and hanging. Answers whether they did.
    pub async fn wait_for_connections(&self, n: usize) -> bool {
        for _ in 0..200 {
            if self.accepted.load(std::sync::atomic::Ordering::SeqCst) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }
}
