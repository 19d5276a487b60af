//! Adaptive concurrency limits on a simulated backend whose capacity changes: how close each
//! algorithm keeps a [`Limiter`](schedgroup::Limiter)'s limit to what the backend can take,
//! and what that costs in throughput, latency and errors.
//!
//! Every row runs on a fresh current-thread runtime on tokio's paused clock, so four minutes of
//! simulated time take a few seconds, and a run is the same every time (the random numbers
//! come from fixed seeds).
//!
//! # The backend
//!
//! `C` servers, each serving one request at a time, behind one first-come-first-served line.
//! A service time is `base * exp(0.1 * N(0, 1))`, rounded to whole milliseconds (tokio's timer
//! resolution). A request that arrives when `2C` are already in flight there (waiting or
//! served) is refused: it fails after 1 ms. When `C` drops, busy servers finish their request
//! and are not reused while more than `C` are busy. A request's latency is from the call to the
//! answer. Four phases of 60 s:
//!
//! | phase | from | C | base |
//! |---|---|---|---|
//! | 1 | 0 s | 40 | 20 ms |
//! | 2 | 60 s | 10 | 20 ms |
//! | 3 | 120 s | 60 | 20 ms |
//! | 4 | 180 s | 60 | 30 ms |
//!
//! # The workload
//!
//! One [`Group`](schedgroup::Group) on the row's limiter, with no cap of its own, whose due
//! backlog never empties: every millisecond it is topped up to `2 * limit + 100` pending tasks.
//! Each task sends one request, records it, and reports it to the row's controller. The limit
//! is sampled every 10 ms. After 240 s the group is cancelled.
//!
//! # Rows
//!
//! - `static-N`: the limit stays `N`. References, not candidates.
//! - `aimd`, `gradient`: the crate's own [`Adaptive`](schedgroup::Adaptive) controller with
//!   its defaults, set on the limiter (starting from 10); a refused request calls
//!   `Limiter::overloaded`, and the group times every task itself.
//! - `gradient2-defaults`, `vegas-defaults`, `vector-defaults`: published algorithms with
//!   their published defaults, written in `published.rs` and run outside the crate: each sees
//!   every request and sets the limit itself.
//!
//! The list is [`rows`]; how a row steers its limiter is `control.rs`.
//!
//! # Metrics, per algorithm and phase
//!
//! - `settled_limit`: the time-weighted mean limit over the second half of the phase.
//! - `settle_s`: seconds from the phase's start until the limit's one-second means (bins from
//!   the phase's start) stay within `C ± 20%` for the rest of the phase: the end of the last
//!   bin outside the band, 0 if none is, 60 if the last one is.
//! - `throughput_ratio`: successful requests per second that ended in the second half, over
//!   `C / base`.
//! - `p99_over_base`: the 99th percentile latency of those successes, over `base`.
//! - `error_rate`: refused over started, of the requests that started in the phase (a request
//!   still in flight when the run ends is not counted).
//!
//! The targets, for adaptive rows: `|settled_limit - C| / C <= 0.2`, `settle_s <= 5`,
//! `throughput_ratio >= 0.95`, `p99_over_base <= 1.75`, `error_rate <= 0.01`.
//!
//! # Running it
//!
//! ```text
//! cargo run --release --example adaptive                      # Markdown table
//! cargo run --release --example adaptive -- --json            # one JSON line per phase
//! cargo run --release --example adaptive -- --only vegas-defaults
//! cargo run --release --example adaptive -- --seed 3          # other random numbers
//! cargo run --release --example adaptive -- --check           # exit 1 if the crate misses
//! cargo run --release --example adaptive -- --svg out.svg     # picture elsewhere
//! cargo run --release --example adaptive -- --no-svg          # no picture
//! ```
//!
//! The picture (by default `docs/adaptive.svg`) shows each algorithm's limit over time against
//! `C`.

mod backend;
mod control;
mod plot;
mod published;
mod report;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use backend::Phase;

/// The backend's phases, in order, each [`PHASE`] long.
const PHASES: [Phase; 4] = [phase(40, 20), phase(10, 20), phase(60, 20), phase(60, 30)];

/// How long each phase lasts.
const PHASE: Duration = Duration::from_secs(60);

/// How long a run lasts: every phase.
const RUN: Duration = Duration::from_secs(60 * PHASES.len() as u64);

/// The seed of the backend's service times and of any controller that draws random numbers.
const SEED: u64 = 11;

const fn phase(capacity: usize, base_ms: u64) -> Phase {
    Phase {
        capacity,
        base: Duration::from_millis(base_ms),
    }
}

/// One algorithm to run.
#[derive(Debug, Clone, Copy)]
struct Row {
    name: &'static str,
    kind: RowKind,
}

/// How a row sets its limit (see `control::configure`).
#[derive(Debug, Clone, Copy)]
enum RowKind {
    /// A limit that never changes.
    Static(usize),
    /// The crate's own controller (`Limiter::set_adaptive`), starting from a limit of 10.
    Crate(schedgroup::Adaptive),
    /// Netflix's `Gradient2Limit` with its defaults, in its `WindowedLimit`. (This and the
    /// two below are the published controllers the crate's is compared with.)
    Gradient2,
    /// Netflix's `VegasLimit` with its defaults, per request.
    Vegas,
    /// Vector's adaptive request concurrency with its defaults.
    Vector,
}

impl Row {
    /// Whether the targets apply: every row but a static one.
    fn is_adaptive(&self) -> bool {
        !matches!(self.kind, RowKind::Static(_))
    }
}

/// Every row, in the order they are reported. Adding a row is adding a line.
fn rows() -> Vec<Row> {
    let row = |name, kind| Row { name, kind };
    vec![
        row("static-10", RowKind::Static(10)),
        row("static-40", RowKind::Static(40)),
        row("static-60", RowKind::Static(60)),
        row("aimd", RowKind::Crate(schedgroup::Adaptive::aimd())),
        row("gradient", RowKind::Crate(schedgroup::Adaptive::gradient())),
        row("gradient2-defaults", RowKind::Gradient2),
        row("vegas-defaults", RowKind::Vegas),
        row("vector-defaults", RowKind::Vector),
    ]
}

/// The command line.
struct Args {
    json: bool,
    check: bool,
    seed: u64,
    only: Option<String>,
    svg: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        json: false,
        check: false,
        seed: SEED,
        only: None,
        svg: Some(PathBuf::from("docs/adaptive.svg")),
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--json" => args.json = true,
            "--check" => args.check = true,
            "--seed" => {
                let seed = words.next().ok_or("--seed needs a number")?;
                args.seed = seed
                    .parse()
                    .map_err(|_| format!("--seed {seed:?}: not a number"))?;
            }
            "--only" => args.only = Some(words.next().ok_or("--only needs a row's name")?),
            "--svg" => args.svg = Some(words.next().ok_or("--svg needs a path")?.into()),
            "--no-svg" => args.svg = None,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            eprintln!(
                "usage: adaptive [--json] [--check] [--seed N] [--only NAME] [--svg PATH | --no-svg]"
            );
            return ExitCode::from(2);
        }
    };
    let mut rows = rows();
    if let Some(only) = &args.only {
        rows.retain(|row| row.name == *only);
        if rows.is_empty() {
            let names: Vec<&str> = self::rows().iter().map(|row| row.name).collect();
            eprintln!("no row {only:?}; the rows are {}", names.join(", "));
            return ExitCode::from(2);
        }
    }

    let wall = std::time::Instant::now();
    let mut traces = Vec::new();
    let mut reports = Vec::new();
    for row in &rows {
        let mut trace = run::run(row, args.seed);
        reports.extend(report::measure(row, &trace));
        // The picture needs only the limits; a row can leave millions of requests.
        trace.requests = Vec::new();
        traces.push(trace);
    }
    if args.json {
        for report in &reports {
            println!("{}", report.json());
        }
    } else {
        print!("{}", report::markdown(&reports));
    }
    eprintln!(
        "{} rows, {} s simulated each, in {:.1} s",
        rows.len(),
        RUN.as_secs(),
        wall.elapsed().as_secs_f64()
    );

    // The crate's own rows must meet every target in every phase; other rows are there to
    // compare with.
    let crate_rows: Vec<&str> = rows
        .iter()
        .filter(|row| matches!(row.kind, RowKind::Crate(_)))
        .map(|row| row.name)
        .collect();
    let missed: Vec<String> = reports
        .iter()
        .filter(|r| crate_rows.contains(&r.algorithm) && !r.met().all())
        .map(|r| format!("{} phase {}", r.algorithm, r.phase))
        .collect();
    if args.check && !missed.is_empty() {
        eprintln!("targets missed: {}", missed.join(", "));
        return ExitCode::FAILURE;
    }

    if let Some(path) = &args.svg {
        let runs: Vec<(&str, &run::Trace)> = rows.iter().map(|row| row.name).zip(&traces).collect();
        if let Err(error) = plot::draw(path, &runs) {
            eprintln!("could not draw {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
