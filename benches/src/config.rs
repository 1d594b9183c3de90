//! Command-line options.

use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::time::Duration;

/// Every scenario name, in the order they run.
pub const SCENARIOS: &[&str] = &["startup", "slots", "book", "hot", "fanout", "queue"];

/// The usage text.
pub const USAGE: &str = "usage: careslot-bench [--smoke] [--out DIR] [--bin-dir DIR] [--only a,b] [--seconds N]\n\
                  [--concurrency N] [--no-pin] [--keep-db] [--postgres URL] [--redis URL]\n\n\
  --smoke        a few seconds per scenario, small counts: checks correctness, not speed\n\
  --out DIR      where report.json and report.md go (default: bench-report)\n\
  --bin-dir DIR  where careslot-api is (default: next to this executable)\n\
  --only LIST    scenarios to run: startup,slots,book,hot,fanout,queue (default: all)\n\
  --seconds N    length of each load run (default 15, smoke 1)\n\
  --concurrency  closed-loop clients at saturation (default 64, smoke 8)\n\
  --no-pin       do not pin the server and the load generator to one core each\n\
  --keep-db      leave the benchmark database in place\n\
  --postgres URL maintenance URL (default $CARESLOT_TEST_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/postgres)\n\
  --redis URL    (default $CARESLOT_TEST_REDIS_URL or redis://127.0.0.1:6379)";

/// One run's options.
#[derive(Clone, Debug)]
pub struct Config {
    /// Smoke mode.
    pub smoke: bool,
    /// Report folder.
    pub out: PathBuf,
    /// Folder of `careslot-api`.
    pub bin_dir: PathBuf,
    /// Scenarios to run.
    pub only: Vec<String>,
    /// Length of each load run.
    pub duration: Duration,
    /// Closed-loop clients.
    pub concurrency: usize,
    /// Pin server to core 0 and the load generator to core 1.
    pub pin: bool,
    /// Keep the database afterwards.
    pub keep_db: bool,
    /// PostgreSQL maintenance URL.
    pub postgres: String,
    /// Redis URL.
    pub redis: String,
}

impl Config {
    /// Parses `args` (without the program name); `Ok(None)` for `--help`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Option<Self>> {
        let mut args = args.into_iter();
        let mut smoke = false;
        let mut out = PathBuf::from("bench-report");
        let mut bin_dir = None;
        let mut only: Vec<String> = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
        let mut seconds = None;
        let mut concurrency = None;
        let mut pin = true;
        let mut keep_db = false;
        let mut postgres = std::env::var("CARESLOT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut redis = std::env::var("CARESLOT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "-h" | "--help" => return Ok(None),
                "--smoke" => smoke = true,
                "--out" => out = value("--out")?.into(),
                "--bin-dir" => bin_dir = Some(PathBuf::from(value("--bin-dir")?)),
                "--only" => {
                    only = value("--only")?.split(',').map(|s| s.trim().to_owned()).collect();
                    if let Some(bad) = only.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
                        bail!("unknown scenario {bad:?}; known: {}", SCENARIOS.join(","));
                    }
                }
                "--seconds" => seconds = Some(value("--seconds")?.parse::<u64>().context("--seconds")?),
                "--concurrency" => {
                    concurrency = Some(value("--concurrency")?.parse::<usize>().context("--concurrency")?)
                }
                "--no-pin" => pin = false,
                "--keep-db" => keep_db = true,
                "--postgres" => postgres = value("--postgres")?,
                "--redis" => redis = value("--redis")?,
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        let bin_dir = match bin_dir {
            Some(dir) => dir,
            None => std::env::current_exe()?
                .parent()
                .context("the executable has no folder")?
                .to_path_buf(),
        };
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Some(Self {
            smoke,
            out,
            bin_dir,
            only,
            duration: Duration::from_secs(seconds.unwrap_or(if smoke { 1 } else { 15 })),
            concurrency: concurrency.unwrap_or(if smoke { 8 } else { 64 }),
            // Smoke runs share the machine with the rest of the test suite.
            pin: pin && !smoke && cpus >= 2,
            keep_db,
            postgres,
            redis,
        }))
    }

    /// True when `scenario` is selected.
    pub fn runs(&self, scenario: &str) -> bool {
        self.only.iter().any(|s| s == scenario)
    }
}
