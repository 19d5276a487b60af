//! The picture: one panel per algorithm, its limit over time against the backend's capacity.

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;

use crate::run::Trace;
use crate::{PHASE, PHASES, RUN};

/// Panels side by side.
const COLUMNS: usize = 2;

/// The limit is drawn as its means over bins this long (seconds), to keep the file small.
const BIN: f64 = 0.1;

/// Draws every run's limit to an SVG file at `path`.
pub(crate) fn draw(path: &Path, runs: &[(&str, &Trace)]) -> Result<(), Box<dyn Error>> {
    let rows = runs.len().div_ceil(COLUMNS);
    let size = (1200, 40 + 300 * rows as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Limit over time (blue) against the backend's capacity C (black; C ± 20% shaded)",
        ("sans-serif", 20),
    )?;
    let panels = root.split_evenly((rows, COLUMNS));
    for (panel, (name, trace)) in panels.iter().zip(runs) {
        let limits = binned(trace);
        let highest = limits.iter().map(|&(_, limit)| limit).fold(0.0, f64::max);
        let capacity = PHASES
            .iter()
            .map(|phase| phase.capacity as f64)
            .fold(0.0, f64::max);
        let top = (highest.max(capacity) * 1.1).ceil();
        let end = RUN.as_secs_f64();
        let mut chart = ChartBuilder::on(panel)
            .caption(*name, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..end, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("simulated time (s)")
            .y_desc("limit")
            .x_labels(9)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        chart.draw_series(phases().map(|(from, to, capacity)| {
            Rectangle::new(
                [(from, capacity * 0.8), (to, capacity * 1.2)],
                GREEN.mix(0.15).filled(),
            )
        }))?;
        let steps = phases().flat_map(|(from, to, capacity)| [(from, capacity), (to, capacity)]);
        chart.draw_series(LineSeries::new(steps, BLACK.stroke_width(2)))?;
        chart.draw_series(LineSeries::new(limits, BLUE.stroke_width(2)))?;
    }
    root.present()?;
    Ok(())
}

/// Each phase as (start, end, capacity), in seconds.
fn phases() -> impl Iterator<Item = (f64, f64, f64)> {
    let length = PHASE.as_secs_f64();
    PHASES.iter().enumerate().map(move |(index, phase)| {
        let from = index as f64 * length;
        (from, from + length, phase.capacity as f64)
    })
}

/// The limit's means over consecutive bins of [`BIN`], each at its bin's middle.
fn binned(trace: &Trace) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut current = (0_usize, 0.0, 0_u32);
    for &(at, limit) in &trace.limits {
        let bin = (at / BIN + 1e-9) as usize;
        if bin != current.0 && current.2 > 0 {
            out.push((
                (current.0 as f64 + 0.5) * BIN,
                current.1 / f64::from(current.2),
            ));
            current = (bin, 0.0, 0);
        }
        current.0 = bin;
        current.1 += limit as f64;
        current.2 += 1;
    }
    if current.2 > 0 {
        out.push((
            (current.0 as f64 + 0.5) * BIN,
            current.1 / f64::from(current.2),
        ));
    }
    out
}
