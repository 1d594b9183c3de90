//! The results of a run: JSON for machines, a Markdown table for BENCHMARKS.md.

use crate::load::Run;
use serde::Serialize;
use std::fmt::Write as _;

/// One measured figure, with its target when the issue sets one.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What was measured.
    pub metric: String,
    /// The target, as the issue words it.
    pub target: Option<String>,
    /// The figure.
    pub measured: String,
    /// Whether the target is met (None: no target).
    pub met: Option<bool>,
}

/// One correctness check.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What must hold.
    pub what: String,
    /// Whether it did.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// One scenario's results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// Figures.
    pub rows: Vec<Row>,
    /// Correctness checks.
    pub checks: Vec<Check>,
    /// Raw load runs.
    pub runs: Vec<Run>,
    /// Anything worth a sentence.
    pub notes: Vec<String>,
}

impl Scenario {
    /// An empty scenario called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    /// A figure with an upper bound (`measured <= limit` meets it).
    pub fn at_most(&mut self, metric: &str, measured: f64, limit: f64, unit: &str) {
        self.rows.push(Row {
            metric: metric.to_owned(),
            target: Some(format!("<= {} {unit}", fmt(limit))),
            measured: format!("{} {unit}", fmt(measured)),
            met: Some(measured <= limit),
        });
    }

    /// A figure with a lower bound.
    pub fn at_least(&mut self, metric: &str, measured: f64, limit: f64, unit: &str) {
        self.rows.push(Row {
            metric: metric.to_owned(),
            target: Some(format!(">= {} {unit}", fmt(limit))),
            measured: format!("{} {unit}", fmt(measured)),
            met: Some(measured >= limit),
        });
    }

    /// A figure without a target.
    pub fn info(&mut self, metric: &str, measured: impl Into<String>) {
        self.rows.push(Row {
            metric: metric.to_owned(),
            target: None,
            measured: measured.into(),
            met: None,
        });
    }

    /// A correctness check.
    pub fn check(&mut self, what: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            what: what.to_owned(),
            ok,
            detail: detail.into(),
        });
    }

    /// True when every check held.
    pub fn correct(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// Figures without needless digits.
pub fn fmt(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The machine a run happened on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Memory.
    pub memory: String,
    /// Kernel.
    pub kernel: String,
    /// `uptime` load averages at the start.
    pub load_at_start: String,
    /// And at the end.
    pub load_at_end: String,
    /// How busy all CPUs were over the second before the run, in percent:
    /// what the run competes with before it starts.
    pub busy_before_percent: Option<f64>,
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `full` or `smoke`.
    pub mode: String,
    /// The commit measured (`git describe`), when known.
    pub commit: String,
    /// When it started (UTC).
    pub started_at: String,
    /// How long it took, seconds.
    pub seconds: f64,
    /// Whether server and load generator were pinned to a core each.
    pub pinned: bool,
    /// Where it ran.
    pub machine: Machine,
    /// Every scenario.
    pub scenarios: Vec<Scenario>,
}

impl Report {
    /// The Markdown tables.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Run `{}` of commit `{}` at {} ({:.0} s); {} x {}, {}, kernel {}; pinned: {}; load at start `{}`, at end `{}`; CPUs busy before the run: {}.\n",
            self.mode,
            self.commit,
            self.started_at,
            self.seconds,
            self.machine.cpus,
            self.machine.cpu,
            self.machine.memory,
            self.machine.kernel,
            self.pinned,
            self.machine.load_at_start,
            self.machine.load_at_end,
            self.machine
                .busy_before_percent
                .map_or_else(|| "unknown".to_owned(), |p| format!("{p:.0}%")),
        );
        for scenario in &self.scenarios {
            let _ = writeln!(out, "### {}\n", scenario.name);
            let _ = writeln!(out, "| metric | target | measured | met |\n| --- | --- | --- | --- |");
            for row in &scenario.rows {
                let met = match row.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    row.metric,
                    row.target.as_deref().unwrap_or(""),
                    row.measured,
                    met
                );
            }
            let _ = writeln!(out);
            for check in &scenario.checks {
                let mark = if check.ok { "ok" } else { "**FAILED**" };
                let _ = writeln!(out, "- {mark}: {} ({})", check.what, check.detail);
            }
            for note in &scenario.notes {
                let _ = writeln!(out, "- note: {note}");
            }
            let _ = writeln!(out);
        }
        out
    }
}

impl Scenario {
    /// The p99 and p50 rows of an open-loop run at `label`, or a missed target
    /// saying why it did not run (the saturation rate is below the arrival rate).
    pub fn open_loop(&mut self, label: &str, open: Option<&Run>, p99_limit: f64, saturation: &Run) {
        match open {
            Some(open) => {
                self.at_most(
                    &format!("p99 at {label}, open loop"),
                    open.latency.p99_ms,
                    p99_limit,
                    "ms",
                );
                if open.shed > 0 {
                    // The p99 covers only what was sent: with arrivals shed,
                    // the server did not keep up, whatever it says.
                    if let Some(row) = self.rows.last_mut() {
                        row.met = Some(false);
                    }
                    self.info(
                        &format!("arrivals shed at {label} (too many in flight)"),
                        open.shed.to_string(),
                    );
                }
                self.info(
                    &format!("p50 at {label}, open loop"),
                    format!("{:.2} ms", open.latency.p50_ms),
                );
            }
            None => self.rows.push(Row {
                metric: format!("p99 at {label}, open loop"),
                target: Some(format!("<= {} ms", fmt(p99_limit))),
                measured: format!("not run: saturation is {:.0}/s", saturation.throughput),
                met: Some(false),
            }),
        }
    }
}
