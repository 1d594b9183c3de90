//! CPU time spent per operation by each process of a run, read from `/proc`.
//!
//! Throughput on a shared two-core machine moves with the machine (one of
//! the same kind ran the same commit at a third of another's speed) and with
//! whatever else runs on it. The CPU each process spends per operation moves
//! much less, so the report gives it beside the throughput figures: it is
//! what a change to Careslot's work per request shows up in.
//!
//! Off Linux (no `/proc`) every reading is zero and the rows say so.

use std::time::Duration;

/// Kernel clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, which
/// Linux fixes at 100 on every architecture it exposes to user space).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time used so far (user + system, all threads), per process group.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    /// The server under load.
    pub server: Duration,
    /// Every `postgres` process (the pool's backends live through a run).
    pub postgres: Duration,
    /// Every `redis-server` process.
    pub redis: Duration,
    /// This process: the load generator, and the queue scenario's workers.
    pub bench: Duration,
}

impl CpuTimes {
    /// The times now; `server` is the server's process id.
    pub fn now(server: u32) -> Self {
        let mut times = Self {
            server: process_time(&server.to_string()),
            bench: process_time("self"),
            ..Self::default()
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return times;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
                continue;
            };
            match std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .as_deref()
                .map(str::trim)
            {
                Ok("postgres") => times.postgres += process_time(pid),
                Ok("redis-server") => times.redis += process_time(pid),
                _ => {}
            }
        }
        times
    }

    /// What was spent between `earlier` and `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            server: self.server.saturating_sub(earlier.server),
            postgres: self.postgres.saturating_sub(earlier.postgres),
            redis: self.redis.saturating_sub(earlier.redis),
            bench: self.bench.saturating_sub(earlier.bench),
        }
    }

    /// Each group's time per one of `operations`, in microseconds, as
    /// `server / PostgreSQL / Redis / bench`.
    pub fn per_operation(&self, operations: u64) -> String {
        let each = |d: Duration| d.as_secs_f64() * 1e6 / operations.max(1) as f64;
        format!(
            "{:.0} / {:.0} / {:.0} / {:.0} µs",
            each(self.server),
            each(self.postgres),
            each(self.redis),
            each(self.bench)
        )
    }
}

/// How busy the machine's CPUs are over `window` (0 to 1, of all of them),
/// from `/proc/stat`: read before a run starts, it is the load the run will
/// compete with (other tenants, the kernel's own work); `None` without `/proc`.
pub fn machine_busy(window: Duration) -> Option<f64> {
    let first = cpu_jiffies()?;
    std::thread::sleep(window);
    let second = cpu_jiffies()?;
    let total = second.0.checked_sub(first.0)?;
    let idle = second.1.checked_sub(first.1)?;
    (total > 0).then(|| (total - idle) as f64 / total as f64)
}

/// (all, idle + iowait) jiffies of the `cpu` line of `/proc/stat`.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() < 5 {
        return None;
    }
    Some((fields.iter().sum(), fields[3] + fields[4]))
}

/// User + system time of `/proc/<pid>`, zero when it cannot be read (the
/// process ended, or no `/proc`).
fn process_time(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name (field 2) is in parentheses and may hold spaces: count
    // fields from the last ')'. After it come state (3) ... utime (14), stime (15).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_time_grows_with_work() {
        let before = process_time("self");
        // Spin for a while of CPU time (ticks are 10 ms).
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let spent = process_time("self").saturating_sub(before);
        assert!(spent >= Duration::from_millis(100), "spent {spent:?}");
    }

    #[test]
    fn a_busy_machine_reads_busier_than_nothing() {
        // This test's own spinning thread keeps at least part of one CPU busy.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let busy = machine_busy(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = spinner.join();
        let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let busy = busy.expect("/proc/stat is readable");
        assert!(busy >= 0.5 / cpus && busy <= 1.0, "busy {busy}");
    }

    #[test]
    fn per_operation_divides_each_group() {
        let times = CpuTimes {
            server: Duration::from_millis(400),
            postgres: Duration::from_millis(300),
            redis: Duration::from_millis(20),
            bench: Duration::from_millis(50),
        };
        assert_eq!(times.per_operation(1_000), "400 / 300 / 20 / 50 µs");
    }
}
