//! A small tokio load generator: closed loop (N workers back to back, for
//! saturation throughput) and open loop (a fixed arrival rate, latency measured
//! from each request's intended start so a stalled server cannot hide its queue:
//! no coordinated omission). Latencies go into an HDR histogram.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one request came to, as the scenario judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The expected answer.
    Ok,
    /// A wrong or failed answer (counted, and fails the scenario's check).
    Error,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Smallest.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th.
    pub p90_ms: f64,
    /// 99th.
    pub p99_ms: f64,
    /// 99.9th.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// A latency recorder shared by tasks.
#[derive(Clone)]
pub struct Recorder(Arc<Mutex<Histogram<u64>>>);

impl Default for Recorder {
    fn default() -> Self {
        // 1 µs to 1 h at three significant figures.
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid");
        Self(Arc::new(Mutex::new(histogram)))
    }
}

impl Recorder {
    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut histogram = self.0.lock().unwrap_or_else(|p| p.into_inner());
        histogram.saturating_record(micros);
    }

    /// How many were recorded.
    pub fn count(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The percentiles so far.
    pub fn percentiles(&self) -> Percentiles {
        let h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
            min_ms: h.min() as f64 / 1000.0,
        }
    }
}

/// The outcome of one load run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// `closed(N)` or `open(R/s)`.
    pub mode: String,
    /// Requests completed.
    pub requests: u64,
    /// Of which judged wrong.
    pub errors: u64,
    /// Open loop only: arrivals never sent because `max_in_flight` requests
    /// were outstanding (the server fell behind the rate). Not answers, so
    /// not errors; an open-loop run that shed any is overloaded.
    pub shed: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// Completed requests per second.
    pub throughput: f64,
    /// Latencies.
    pub latency: Percentiles,
}

/// Runs `concurrency` loops, each sending `request(n)` back to back, for `duration`.
pub async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, request: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Verdict> + Send + 'static,
{
    let request = Arc::new(request);
    let recorder = Recorder::default();
    let errors = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let loops: Vec<_> = (0..concurrency)
        .map(|_| {
            let (request, recorder, errors, next) = (request.clone(), recorder.clone(), errors.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let verdict = request(n).await;
                    recorder.record(sent.elapsed());
                    if verdict == Verdict::Error {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in loops {
        let _ = task.await;
    }
    finish(format!("closed({concurrency})"), started, &recorder, &errors)
}

/// Sends `request(n)` at `rate` per second for `duration`, whatever the answers' pace
/// (at most `max_in_flight` outstanding; past that, arrivals are shed and counted in
/// [`Run::shed`]).
pub async fn open_loop<F, Fut>(rate: u64, duration: Duration, max_in_flight: usize, request: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Verdict> + Send + 'static,
{
    let request = Arc::new(request);
    let recorder = Recorder::default();
    let errors = Arc::new(AtomicU64::new(0));
    let shed = AtomicU64::new(0);
    let in_flight = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let total = rate.saturating_mul(duration.as_secs().max(1));
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for n in 0..total {
        let intended = started + period.mul_f64(n as f64);
        let now = Instant::now();
        if intended > now {
            tokio::time::sleep_until(intended.into()).await;
        }
        if in_flight.load(Ordering::Relaxed) >= max_in_flight as u64 {
            shed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (request, recorder, errors, in_flight) =
            (request.clone(), recorder.clone(), errors.clone(), in_flight.clone());
        tasks.push(tokio::spawn(async move {
            let verdict = request(n).await;
            // From the intended start: time spent waiting to be sent counts.
            recorder.record(intended.elapsed());
            in_flight.fetch_sub(1, Ordering::Relaxed);
            if verdict == Verdict::Error {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Run {
        shed: shed.load(Ordering::Relaxed),
        ..finish(format!("open({rate}/s)"), started, &recorder, &errors)
    }
}

fn finish(mode: String, started: Instant, recorder: &Recorder, errors: &AtomicU64) -> Run {
    let seconds = started.elapsed().as_secs_f64();
    let requests = recorder.count();
    Run {
        mode,
        requests,
        errors: errors.load(Ordering::Relaxed),
        shed: 0,
        seconds,
        throughput: requests as f64 / seconds.max(1e-9),
        latency: recorder.percentiles(),
    }
}
