//! The metrics of each (algorithm, phase), as JSON lines or a Markdown table.

use std::fmt::Write as _;

use crate::control::Outcome;
use crate::run::Trace;
use crate::{PHASE, PHASES, Row};

/// The targets an adaptive row should meet in every phase.
mod target {
    /// `|settled_limit - C| / C` at most this.
    pub(super) const LIMIT_ERROR: f64 = 0.20;
    /// `settle_s` at most this.
    pub(super) const SETTLE_S: f64 = 5.0;
    /// `throughput_ratio` at least this.
    pub(super) const THROUGHPUT: f64 = 0.95;
    /// `p99_over_base` at most this.
    pub(super) const P99: f64 = 1.75;
    /// `error_rate` at most this.
    pub(super) const ERRORS: f64 = 0.01;
}

/// The band around `C` the limit's one-second means must stay in to count as settled.
const SETTLE_BAND: f64 = 0.20;

/// One algorithm in one phase. The fields are the JSON line's, in its order.
#[derive(Debug, Clone)]
pub(crate) struct PhaseReport {
    pub(crate) algorithm: &'static str,
    /// Whether the targets apply (a static row is a reference).
    pub(crate) adaptive: bool,
    /// From 1.
    pub(crate) phase: usize,
    pub(crate) capacity: usize,
    /// The time-weighted mean of the limit over the second half of the phase.
    pub(crate) settled_limit: f64,
    /// Seconds from the phase's start to the end of the last one-second bin whose mean limit
    /// is outside `C ± 20%`: 0 if none is, 60 if the last one is.
    pub(crate) settle_s: f64,
    /// Successes per second over the second half, over `C / base`.
    pub(crate) throughput_ratio: f64,
    /// The 99th percentile latency of the successes that ended in the second half, over
    /// `base`; `None` if there were none.
    pub(crate) p99_over_base: Option<f64>,
    /// Refused over started, of the requests that started in the phase.
    pub(crate) error_rate: f64,
}

/// Which targets a phase meets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Met {
    limit: bool,
    settle: bool,
    throughput: bool,
    p99: bool,
    errors: bool,
}

impl Met {
    pub(crate) fn all(self) -> bool {
        self.limit && self.settle && self.throughput && self.p99 && self.errors
    }

    /// The names of the targets missed.
    fn misses(self) -> Vec<&'static str> {
        [
            (self.limit, "limit"),
            (self.settle, "settle"),
            (self.throughput, "throughput"),
            (self.p99, "p99"),
            (self.errors, "errors"),
        ]
        .into_iter()
        .filter(|(met, _)| !met)
        .map(|(_, name)| name)
        .collect()
    }
}

/// The report of each phase of `row`'s run.
pub(crate) fn measure(row: &Row, trace: &Trace) -> Vec<PhaseReport> {
    let length = PHASE.as_secs_f64();
    PHASES
        .iter()
        .enumerate()
        .map(|(index, phase)| {
            let start = index as f64 * length;
            let (half, end) = (start + length / 2.0, start + length);
            let capacity = phase.capacity as f64;
            let base = phase.base.as_secs_f64();
            let between = |from: f64, to: f64| {
                trace
                    .limits
                    .iter()
                    .filter(move |&&(at, _)| at >= from && at < to)
                    .map(|&(_, limit)| limit as f64)
            };

            // The samples are evenly spaced, so their plain mean is the time-weighted one.
            let settled_limit = mean(between(half, end)).unwrap_or(f64::NAN);
            let last_outside = (0..length as usize).rev().find(|&second| {
                let from = start + second as f64;
                mean(between(from, from + 1.0))
                    .is_none_or(|limit| (limit - capacity).abs() > SETTLE_BAND * capacity)
            });
            let settle_s = last_outside.map_or(0.0, |second| (second + 1) as f64);

            let mut latencies: Vec<f64> = trace
                .requests
                .iter()
                .filter(|request| request.ok && request.end() >= half && request.end() < end)
                .map(|request| request.latency)
                .collect();
            let throughput_ratio = latencies.len() as f64 / (end - half) / (capacity / base);
            let p99_over_base = percentile(&mut latencies, 0.99).map(|p99| p99 / base);

            let started: Vec<&Outcome> = trace
                .requests
                .iter()
                .filter(|request| request.start >= start && request.start < end)
                .collect();
            let refused = started.iter().filter(|request| !request.ok).count();
            let error_rate = ratio(refused, started.len());

            PhaseReport {
                algorithm: row.name,
                adaptive: row.is_adaptive(),
                phase: index + 1,
                capacity: phase.capacity,
                settled_limit,
                settle_s,
                throughput_ratio,
                p99_over_base,
                error_rate,
            }
        })
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0_u32), |(sum, count), value| (sum + value, count + 1));
    (count > 0).then(|| sum / f64::from(count))
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The nearest-rank percentile `q` of `values` (sorted in place); `None` if empty.
fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

impl PhaseReport {
    /// Which targets it meets, judged on the numbers as printed (3 decimals): latencies are
    /// whole milliseconds, so a ratio such as 35 ms / 20 ms lands on a target exactly, and
    /// should not miss it by a rounding error.
    pub(crate) fn met(&self) -> Met {
        let capacity = self.capacity as f64;
        let limit_error = round((self.settled_limit - capacity).abs() / capacity, 3);
        Met {
            limit: limit_error <= target::LIMIT_ERROR,
            settle: round(self.settle_s, 2) <= target::SETTLE_S,
            throughput: round(self.throughput_ratio, 3) >= target::THROUGHPUT,
            p99: self
                .p99_over_base
                .is_some_and(|p99| round(p99, 3) <= target::P99),
            errors: round(self.error_rate, 3) <= target::ERRORS,
        }
    }

    /// One line of JSON, numbers rounded to 3 decimals (`null` for a number there is none of).
    pub(crate) fn json(&self) -> String {
        format!(
            r#"{{"algorithm":"{}","phase":{},"capacity":{},"settled_limit":{},"settle_s":{},"throughput_ratio":{},"p99_over_base":{},"error_rate":{}}}"#,
            self.algorithm,
            self.phase,
            self.capacity,
            number(Some(self.settled_limit), 3),
            number(Some(self.settle_s), 2),
            number(Some(self.throughput_ratio), 3),
            number(self.p99_over_base, 3),
            number(Some(self.error_rate), 3),
        )
    }
}

/// `value` rounded to `decimals` as a JSON number: `41.2`, `0.0`; `null` if there is none.
fn number(value: Option<f64>, decimals: i32) -> String {
    match value.filter(|value| value.is_finite()) {
        // Debug prints the shortest form that reads back the same, with a `.0` if whole.
        Some(value) => format!("{:?}", round(value, decimals)),
        None => "null".to_owned(),
    }
}

/// `value` rounded to `decimals` decimals.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10_f64.powi(decimals);
    (value * scale).round() / scale
}

/// A Markdown table of every report, then what each algorithm meets.
pub(crate) fn markdown(reports: &[PhaseReport]) -> String {
    let mut out = String::new();
    out.push_str(
        "| algorithm | phase | C | settled limit | settle (s) | throughput | p99 / base | errors | targets missed |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for report in reports {
        let misses = report.met().misses();
        let missed = if misses.is_empty() {
            "none".to_owned()
        } else {
            misses.join(", ")
        };
        let missed = if report.adaptive {
            missed
        } else {
            format!("({missed})")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            report.algorithm,
            report.phase,
            report.capacity,
            number(Some(report.settled_limit), 1),
            number(Some(report.settle_s), 2),
            number(Some(report.throughput_ratio), 3),
            number(report.p99_over_base, 3),
            number(Some(report.error_rate), 3),
            missed,
        );
    }
    let _ = writeln!(
        out,
        "\nTargets, for adaptive rows (a static row's misses are in parentheses, for reference): \
         |settled limit - C| / C <= {}, settle <= {} s, throughput >= {}, p99 / base <= {}, \
         errors <= {}.\n",
        target::LIMIT_ERROR,
        target::SETTLE_S,
        target::THROUGHPUT,
        target::P99,
        target::ERRORS,
    );
    let mut algorithms: Vec<&'static str> = reports.iter().map(|r| r.algorithm).collect();
    algorithms.dedup();
    for algorithm in algorithms {
        let phases: Vec<&PhaseReport> = reports
            .iter()
            .filter(|r| r.algorithm == algorithm)
            .collect();
        let all: Vec<String> = phases
            .iter()
            .filter(|r| r.met().all())
            .map(|r| r.phase.to_string())
            .collect();
        let _ = writeln!(
            out,
            "- {algorithm}: every target met in {} of {} phases{}",
            all.len(),
            phases.len(),
            if all.is_empty() {
                String::new()
            } else {
                format!(" ({})", all.join(", "))
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RowKind;

    #[test]
    fn percentile_is_the_nearest_rank() {
        let mut values: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut values, 0.99), Some(198.0));
        assert_eq!(percentile(&mut [5.0], 0.99), Some(5.0));
        assert_eq!(percentile(&mut [], 0.99), None);
    }

    /// A run whose limit is 10 for the first 3 s and 40 after, with one request per second
    /// that ends in phase 1, every other one refused.
    fn trace() -> Trace {
        let limits = (0..24_000)
            .map(|tick| {
                let at = f64::from(tick) / 100.0;
                (at, if at < 3.0 { 10 } else { 40 })
            })
            .collect();
        let requests = (0..59)
            .map(|second| Outcome {
                start: f64::from(second),
                latency: 0.02,
                ok: second % 2 == 0,
                in_flight: 1,
            })
            .collect();
        Trace { limits, requests }
    }

    #[test]
    fn phase_metrics_follow_their_definitions() {
        let row = Row {
            name: "test",
            kind: RowKind::Static(40),
        };
        let reports = measure(&row, &trace());
        let first = &reports[0];
        assert_eq!((first.phase, first.capacity), (1, 40));
        assert_eq!(first.settled_limit, 40.0);
        assert_eq!(
            first.settle_s, 3.0,
            "the end of the last bin outside 32..=48"
        );
        assert!((first.error_rate - 29.0 / 59.0).abs() < 1e-12);
        // 15 successes end in 30..60 s, against 40 / 0.02 = 2000 a second for 30 s.
        assert!((first.throughput_ratio - 15.0 / 30.0 / 2000.0).abs() < 1e-12);
        assert_eq!(
            first.p99_over_base.map(|p99| (p99 * 1e9).round()),
            Some(1e9)
        );
        assert_eq!(reports[1].settle_s, 60.0, "40 is never within 10 ± 20%");
        assert_eq!(reports[1].p99_over_base, None);
        assert_eq!(
            reports[1].json(),
            r#"{"algorithm":"test","phase":2,"capacity":10,"settled_limit":40.0,"settle_s":60.0,"throughput_ratio":0.0,"p99_over_base":null,"error_rate":0.0}"#
        );
    }
}
