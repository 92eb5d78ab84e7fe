//! The report's charts, drawn as SVG text with plotters (no fonts or bitmaps needed).
//!
//! Labels are SVG `<text>` laid out by whoever views the page; plotters only estimates their
//! size (its font-free text metrics), which is why the charts keep generous label areas.
//! Legends are left to the page, in HTML, so they wrap on a phone.

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::model::{Bucket, RunStanding, Standing, Timeline};

/// Chart width and height in SVG units; the page scales them to its width.
const WIDTH: u32 = 760;
const HEIGHT: u32 = 280;
const FONT: (&str, u32) = ("sans-serif", 15);
/// Runs drawn as bars at most (the latest); the page's table lists every run.
pub const STANDING_BARS: usize = 9;

/// The colours of the report, shared with the page's legends.
pub mod colour {
    pub const SUCCEEDED: (u8, u8, u8) = (46, 125, 50);
    pub const FAILED_OPEN: (u8, u8, u8) = (198, 40, 40);
    pub const FAILED_RESOLVED: (u8, u8, u8) = (239, 154, 154);
    pub const INVALID: (u8, u8, u8) = (142, 36, 170);
    pub const SKIPPED: (u8, u8, u8) = (158, 158, 158);
    pub const PENDING: (u8, u8, u8) = (21, 101, 192);
    pub const IN_FLIGHT: (u8, u8, u8) = (100, 181, 246);
    pub const REQUESTS: (u8, u8, u8) = (21, 101, 192);
    pub const LIMIT: (u8, u8, u8) = (66, 66, 66);
    pub const CONFIGURED: (u8, u8, u8) = (170, 170, 170);
    pub const THROTTLED: (u8, u8, u8) = (239, 108, 0);
    pub const HALT: (u8, u8, u8) = (183, 28, 28);
    pub const P50: (u8, u8, u8) = (46, 125, 50);
    pub const P95: (u8, u8, u8) = (239, 108, 0);
    pub const P99: (u8, u8, u8) = (183, 28, 28);

    /// `#rrggbb` for CSS.
    pub fn css(c: (u8, u8, u8)) -> String {
        format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
    }
}

/// A chart that could not be drawn (plotters reports layout errors this way).
#[derive(Debug, thiserror::Error)]
#[error("failed to draw the {chart} chart: {message}")]
pub struct ChartError {
    chart: &'static str,
    message: String,
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

fn rgb(c: (u8, u8, u8)) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// The segments of a standing bar, in drawing order, with their colours.
pub fn segments(s: &Standing) -> [(&'static str, i64, (u8, u8, u8)); 7] {
    [
        ("succeeded", s.counts.succeeded, colour::SUCCEEDED),
        ("failed, open", s.failed_open, colour::FAILED_OPEN),
        (
            "failed, resolved later",
            s.failed_resolved,
            colour::FAILED_RESOLVED,
        ),
        ("invalid", s.counts.invalid, colour::INVALID),
        ("skipped as unchanged", s.counts.skipped, colour::SKIPPED),
        ("in flight", s.counts.in_flight, colour::IN_FLIGHT),
        ("pending", s.counts.pending, colour::PENDING),
    ]
}

/// Runs a drawing into an SVG string and makes it fit the page: no fixed size, no namespace
/// URL (inline SVG in HTML needs none), a title for screen readers.
fn svg(
    chart: &'static str,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Drawn,
) -> Result<String, ChartError> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        draw(root).map_err(|e| ChartError {
            chart,
            message: e.to_string(),
        })?;
    }
    let header = format!(
        r#"<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">"#,
        w = size.0,
        h = size.1
    );
    let fitted = format!(
        r#"<svg viewBox="0 0 {} {}" role="img" aria-label="{chart}" preserveAspectRatio="xMinYMin meet">"#,
        size.0, size.1
    );
    Ok(text.replacen(&header, &fitted, 1))
}

/// One horizontal stacked bar per run (and the total), rows by state.
pub fn standing(runs: &[RunStanding], total: &Standing) -> Result<String, ChartError> {
    let skip = runs.len().saturating_sub(STANDING_BARS);
    let mut bars: Vec<(String, &Standing)> = runs[skip..]
        .iter()
        .map(|r| (r.run.clone(), &r.standing))
        .collect();
    if runs.len() > 1 {
        bars.push(("total".into(), total));
    }
    let height = 50 + 34 * bars.len() as u32;
    svg("rows by state", (WIDTH, height), |root| {
        root.fill(&WHITE)?;
        let n = bars.len();
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .margin_right(24)
            .x_label_area_size(30)
            .y_label_area_size(0)
            .build_cartesian_2d(0f64..100f64, 0f64..n as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .max_light_lines(1)
            .disable_y_axis()
            .x_labels(6)
            .x_label_formatter(&|x| format!("{x:.0}%"))
            .label_style(FONT)
            .draw()?;
        for (i, (name, s)) in bars.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let total = s.total.max(1) as f64;
            let mut x = 0.0;
            for (_, count, c) in segments(s) {
                let w = count as f64 * 100.0 / total;
                if w > 0.0 {
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(x, y + 0.15), (x + w, y + 0.6)],
                        rgb(c).filled(),
                    )))?;
                }
                x += w;
            }
            chart.draw_series(std::iter::once(Text::new(
                format!("{name} ({} rows)", s.total),
                (0.5, y + 0.95),
                FONT.into_font(),
            )))?;
        }
        root.present()?;
        Ok(())
    })
}

/// Draws an x axis of bucket indexes with time labels and returns the chart to draw into.
macro_rules! time_chart {
    ($root:expr, $timeline:expr, $yrange:expr, $ydesc:expr, $labels:expr, $ylabel:expr) => {{
        let n = $timeline.buckets.len().max(1) as f64;
        let mut chart = ChartBuilder::on($root)
            .margin(10)
            .margin_right(24)
            .x_label_area_size(34)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..n, $yrange)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(1)
            .x_labels(7)
            .y_labels(6)
            .x_label_formatter($labels)
            .y_label_formatter($ylabel)
            .y_desc($ydesc)
            .label_style(FONT)
            .axis_desc_style(FONT)
            .draw()?;
        chart
    }};
}

/// An axis number: whole numbers without a decimal point, small ones with one or two.
fn axis_number(v: &f64) -> String {
    if (v.fract()).abs() < 1e-9 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Rows finished per bucket: succeeded and failed, stacked.
pub fn finished(t: &Timeline, label: &dyn Fn(&f64) -> String) -> Result<String, ChartError> {
    let ymax = t
        .buckets
        .iter()
        .map(|b| b.succeeded + b.failed)
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.1;
    svg("rows finished", (WIDTH, HEIGHT), |root| {
        root.fill(&WHITE)?;
        let mut chart = time_chart!(
            &root,
            t,
            0f64..ymax,
            format!("rows per {}", t.bucket),
            label,
            &axis_number
        );
        chart.draw_series(t.buckets.iter().enumerate().flat_map(|(i, b)| {
            let x = i as f64;
            let ok = b.succeeded as f64;
            let bad = b.failed as f64;
            [
                Rectangle::new(
                    [(x + 0.1, 0.0), (x + 0.9, ok)],
                    rgb(colour::SUCCEEDED).filled(),
                ),
                Rectangle::new(
                    [(x + 0.1, ok), (x + 0.9, ok + bad)],
                    rgb(colour::FAILED_OPEN).filled(),
                ),
            ]
        }))?;
        root.present()?;
        Ok(())
    })
}

/// Requests per second against the limit in force, with 429s and halts marked.
pub fn requests(t: &Timeline, label: &dyn Fn(&f64) -> String) -> Result<String, ChartError> {
    let top = t
        .buckets
        .iter()
        .map(|b| {
            b.requests_per_second
                .max(b.rate_limit.unwrap_or(0.0))
                .max(b.configured_rate.unwrap_or(0.0))
        })
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.2;
    svg("requests per second", (WIDTH, HEIGHT), |root| {
        root.fill(&WHITE)?;
        let mut chart = time_chart!(&root, t, 0f64..top, "requests/s", label, &axis_number);
        let mid = |i: usize| i as f64 + 0.5;
        // Halts first, so the lines are drawn over them.
        chart.draw_series(
            t.buckets
                .iter()
                .enumerate()
                .filter(|(_, b)| b.requests.halts() > 0)
                .map(|(i, _)| {
                    Rectangle::new(
                        [(i as f64, 0.0), (i as f64 + 1.0, top)],
                        rgb(colour::HALT).mix(0.25).filled(),
                    )
                }),
        )?;
        // Step lines, one level per bucket: the configured rate dashed, the limit in force
        // (the adaptive one, cut on 429s) solid over it; a gap where no limit held.
        let steps = |pick: fn(&Bucket) -> Option<f64>| -> Vec<Vec<(f64, f64)>> {
            let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
            let mut open = false;
            for (i, b) in t.buckets.iter().enumerate() {
                let Some(l) = pick(b) else {
                    open = false;
                    continue;
                };
                if !open {
                    runs.push(Vec::new());
                    open = true;
                }
                if let Some(run) = runs.last_mut() {
                    run.extend([(i as f64, l), (i as f64 + 1.0, l)]);
                }
            }
            runs
        };
        chart.draw_series(steps(|b| b.configured_rate).into_iter().map(|points| {
            DashedPathElement::new(points, 6, 4, rgb(colour::CONFIGURED).stroke_width(2))
        }))?;
        chart.draw_series(
            steps(|b| b.rate_limit)
                .into_iter()
                .map(|points| PathElement::new(points, rgb(colour::LIMIT).stroke_width(2))),
        )?;
        chart.draw_series(LineSeries::new(
            t.buckets
                .iter()
                .enumerate()
                .map(|(i, b)| (mid(i), b.requests_per_second)),
            rgb(colour::REQUESTS).stroke_width(2),
        ))?;
        chart.draw_series(
            t.buckets
                .iter()
                .enumerate()
                .filter(|(_, b)| b.requests.throttled > 0)
                .map(|(i, _)| {
                    TriangleMarker::new((mid(i), top * 0.96), 6, rgb(colour::THROTTLED).filled())
                }),
        )?;
        root.present()?;
        Ok(())
    })
}

/// Request duration percentiles per bucket.
pub fn latency(t: &Timeline, label: &dyn Fn(&f64) -> String) -> Result<String, ChartError> {
    let top = t
        .buckets
        .iter()
        .filter_map(|b| b.p99_ms)
        .max()
        .unwrap_or(0)
        .max(10) as f64
        * 1.15;
    svg("request duration", (WIDTH, HEIGHT), |root| {
        root.fill(&WHITE)?;
        // Log scale: a few 30 s timeouts must not flatten the typical request to the axis.
        let mut chart = time_chart!(
            &root,
            t,
            (1f64..top).log_scale(),
            "milliseconds (log scale)",
            label,
            &axis_number
        );
        type Pick = fn(&Bucket) -> Option<i64>;
        let lines: [(Pick, (u8, u8, u8)); 3] = [
            (|b| b.p99_ms, colour::P99),
            (|b| b.p95_ms, colour::P95),
            (|b| b.p50_ms, colour::P50),
        ];
        for (pick, c) in lines {
            let points: Vec<(f64, f64)> = t
                .buckets
                .iter()
                .enumerate()
                .filter_map(|(i, b)| pick(b).map(|v| (i as f64 + 0.5, v.max(1) as f64)))
                .collect();
            chart.draw_series(LineSeries::new(points.clone(), rgb(c).stroke_width(2)))?;
            if points.len() < 3 {
                chart.draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 4, rgb(c).filled())),
                )?;
            }
        }
        root.present()?;
        Ok(())
    })
}
