//! The `careslot-api` under test: started as a real process (optionally pinned
//! to one core), watched until it answers, measured (RSS), and stopped.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Secrets shared by every process of one run (the server and the in-process
/// workers must read the same PHI keys).
pub const JWT_SECRET: &str = "bench-secret-bench-secret-bench-secret-01";
/// PHI encryption key ring.
pub const PHI_KEYS: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
/// Blind-index key.
pub const PHI_INDEX_KEY: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
/// The bootstrap admin.
pub const ADMIN_EMAIL: &str = "admin@bench.test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "bench admin password 1";

/// How to start one server.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `careslot-api` executable.
    pub bin: PathBuf,
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `REDIS_URL`, if any.
    pub redis_url: Option<String>,
    /// Redis channel, unique per run so parallel runs and tests do not hear each other.
    pub channel: String,
    /// Working and data directory.
    pub dir: PathBuf,
    /// Core to pin the server to, if any.
    pub cpu: Option<usize>,
    /// Create the bootstrap admin at start.
    pub bootstrap_admin: bool,
}

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// How long after exec `/healthz` first answered (the process is alive).
    pub first_healthz: Duration,
    /// How long after exec `/readyz` first said yes (database and bus reachable;
    /// the server answers requests).
    pub ready_after: Duration,
}

/// The environment every server of the suite gets: limits opened up so the load
/// generator measures the server and not its rate limiter, no embedded worker
/// (the queue scenario runs its own), quiet logs.
fn environment(launch: &Launch, listen: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("CARESLOT_LISTEN", listen),
        ("DATABASE_URL", launch.database_url.as_str()),
        ("CARESLOT_REDIS_CHANNEL", launch.channel.as_str()),
        ("CARESLOT_JWT_SECRET", JWT_SECRET),
        ("CARESLOT_PHI_KEYS", PHI_KEYS),
        ("CARESLOT_PHI_INDEX_KEY", PHI_INDEX_KEY),
        ("CARESLOT_RATE_LIMIT_IP_PER_MINUTE", "1000000000"),
        ("CARESLOT_RATE_LIMIT_USER_PER_MINUTE", "1000000000"),
        ("CARESLOT_ACCESS_TOKEN_TTL_SECONDS", "14400"),
        ("CARESLOT_WORKER_EMBEDDED", "false"),
        ("CARESLOT_WS_MAX_CONNECTIONS", "20000"),
        ("CARESLOT_WS_SEND_BUFFER", "1024"),
        ("CARESLOT_DB_MAX_CONNECTIONS", "24"),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    env.push(("CARESLOT_DATA_DIR".into(), launch.dir.display().to_string()));
    if let Some(redis) = &launch.redis_url {
        env.push(("REDIS_URL".into(), redis.clone()));
    }
    if launch.bootstrap_admin {
        env.push(("CARESLOT_BOOTSTRAP_ADMIN_EMAIL".into(), ADMIN_EMAIL.into()));
        env.push(("CARESLOT_BOOTSTRAP_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()));
    }
    env
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    /// Starts the server and waits (up to `patience`) for `/healthz`, then for `/readyz`.
    pub async fn start(launch: &Launch, patience: Duration) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&launch.dir).with_context(|| format!("creating {}", launch.dir.display()))?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let mut command = match launch.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&launch.bin);
                c
            }
            None => Command::new(&launch.bin),
        };
        let log = std::fs::File::create(launch.dir.join("server.log"))?;
        command
            .current_dir(&launch.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // The allocator's run-time options, for experiments (README.md).
            .envs(std::env::vars().filter(|(name, _)| name.starts_with("MIMALLOC_")))
            .envs(environment(launch, &listen))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let client = crate::gql::client();
        let base = format!("http://{listen}");
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", launch.bin.display()))?;
        let healthz = format!("{base}/healthz");
        while started.elapsed() < patience {
            if let Ok(response) = client.get(&healthz).send().await
                && response.status().is_success()
            {
                let first_healthz = started.elapsed();
                let ready_after = ready(&client, &base, started, patience).await?;
                return Ok(Self {
                    child,
                    base,
                    first_healthz,
                    ready_after,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "careslot-api exited ({status}) before answering; see {}",
                    launch.dir.join("server.log").display()
                );
            }
            // Connection refused comes back at once: poll finely, the figure is in milliseconds.
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let _ = child.kill();
        bail!("careslot-api did not answer /healthz within {patience:?}")
    }

    /// The websocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("{}/graphql/ws", self.base.replacen("http", "ws", 1))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        rss_of(self.pid())
    }

    /// Stops the server (SIGTERM, then SIGKILL after a few seconds).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A panicking or failing run must not leave servers behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `VmRSS` of `pid`, in bytes.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kb: u64 = line.split_whitespace().nth(1).context("VmRSS value")?.parse()?;
    Ok(kb * 1024)
}

/// The executable `name` in `dir`, which must exist.
pub fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release --workspace --bins) or pass --bin-dir",
            path.display()
        );
    }
    Ok(path)
}

/// Waits for `/readyz` on `base`; answers when it first said yes, from `since`.
async fn ready(client: &reqwest::Client, base: &str, since: Instant, patience: Duration) -> anyhow::Result<Duration> {
    let url = format!("{base}/readyz");
    while since.elapsed() < patience {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(since.elapsed());
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    bail!("careslot-api was not ready within {patience:?}")
}
