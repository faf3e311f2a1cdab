//! The report's plots, as SVG written by hand: two line charts need axes,
//! ticks, polylines and a legend, which is less code than a plotting
//! crate's dependency tree costs every build of the workspace, and the text
//! is the same bytes for the same seed.
//!
//! - `sends.svg`: the busiest account's cumulative sends (and arrivals)
//!   against the allowed curve `burst + rate × t / 60` from its first send.
//! - `latency.svg`: quiet accounts' accepted → upstream latency over the
//!   run, p50 / p99 / max per time slice.

use std::fmt::Write as _;
use std::path::Path;

/// What the plots are drawn from (filled by [`crate::check::report`]).
#[derive(Clone, Default, PartialEq)]
pub struct PlotData {
    pub busiest: Option<Busiest>,
    /// (arrival s, latency s) of every sent message of a quiet account.
    pub quiet: Vec<(f64, f64)>,
    pub simulated_s: f64,
}

/// The busiest account: the most messages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Busiest {
    pub account: String,
    /// Arrival times (s after the start), sorted.
    pub arrivals_s: Vec<f64>,
    /// First 2xx of each message (s after the start), sorted.
    pub sends_s: Vec<f64>,
    pub per_minute: f64,
    pub burst: f64,
}

impl std::fmt::Debug for PlotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlotData")
            .field("busiest", &self.busiest.as_ref().map(|b| &b.account))
            .field("quiet_points", &self.quiet.len())
            .finish()
    }
}

const W: f64 = 860.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Points per series at most: one per horizontal pixel pair is plenty.
const COLUMNS: usize = 400;

struct Series {
    label: String,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

struct Chart {
    title: String,
    x_label: &'static str,
    y_label: &'static str,
    x_max: f64,
    y_max: f64,
    series: Vec<Series>,
}

/// A "nice" tick step for a range: 1, 2 or 5 × 10^k, about 5-10 ticks.
fn tick_step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Chart {
    fn svg(&self) -> String {
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let x_max = if self.x_max > 0.0 { self.x_max } else { 1.0 };
        let y_max = if self.y_max > 0.0 { self.y_max } else { 1.0 };
        let sx = |x: f64| LEFT + x / x_max * pw;
        let sy = |y: f64| TOP + ph - y / y_max * ph;
        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            o,
            r#"<text x="{}" y="22" font-size="14" text-anchor="middle">{}</text>"#,
            W / 2.0,
            esc(&self.title)
        );
        // Grid and ticks.
        let (xs, ys) = (tick_step(x_max), tick_step(y_max));
        let mut t = 0.0;
        while t <= x_max + 1e-9 {
            let x = sx(t);
            let _ = writeln!(
                o,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 16.0,
                fmt_tick(t)
            );
            t += xs;
        }
        let mut t = 0.0;
        while t <= y_max + 1e-9 {
            let y = sy(t);
            let _ = writeln!(
                o,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                fmt_tick(t)
            );
            t += ys;
        }
        let _ = writeln!(
            o,
            r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 12.0,
            esc(self.x_label)
        );
        let _ = writeln!(
            o,
            r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            esc(self.y_label)
        );
        for (i, s) in self.series.iter().enumerate() {
            if s.points.is_empty() {
                continue;
            }
            let mut pts = String::new();
            for (x, y) in &s.points {
                let _ = write!(pts, "{:.1},{:.1} ", sx(x.min(x_max)), sy(y.min(y_max)));
            }
            let dash = if s.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"/>"#,
                s.color,
                pts.trim_end()
            );
            let ly = TOP + 14.0 + 16.0 * i as f64;
            let _ = writeln!(
                o,
                r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                LEFT + 10.0,
                LEFT + 34.0,
                s.color,
                LEFT + 40.0,
                ly + 4.0,
                esc(&s.label)
            );
        }
        o.push_str("</svg>\n");
        o
    }
}

/// A cumulative count over sorted times, as a step line with at most
/// `COLUMNS` steps (the last point of each column kept).
fn cumulative(times: &[f64], x_max: f64) -> Vec<(f64, f64)> {
    let mut out = vec![(0.0, 0.0)];
    let col = x_max / COLUMNS as f64;
    let mut last_col = None;
    for (k, &t) in times.iter().enumerate() {
        let c = (t / col).floor() as i64;
        let n = (k + 1) as f64;
        if last_col == Some(c) {
            if let Some(p) = out.last_mut() {
                p.1 = n;
            }
        } else {
            let prev = out.last().map_or(0.0, |p| p.1);
            out.push((t, prev));
            out.push((t, n));
            last_col = Some(c);
        }
    }
    if let Some(&(_, n)) = out.last() {
        out.push((x_max, n));
    }
    out
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn sends_chart(scenario: &str, b: &Busiest) -> Chart {
    let first = b.sends_s.first().copied().unwrap_or(0.0);
    let last = b
        .sends_s
        .last()
        .copied()
        .unwrap_or(0.0)
        .max(b.arrivals_s.last().copied().unwrap_or(0.0));
    let x_max = (last * 1.02).max(1.0);
    let n = b.arrivals_s.len() as f64;
    // The allowed curve from the first send, up to where it passes every
    // message the account had.
    let curve_end = ((n - b.burst).max(0.0) * 60.0 / b.per_minute + first).min(x_max);
    let allowed = vec![
        (first, b.burst),
        (
            curve_end,
            b.burst + b.per_minute * (curve_end - first) / 60.0,
        ),
    ];
    Chart {
        title: format!(
            "{scenario}: sends of {} against burst + rate × t / 60 ({} + {}/min)",
            b.account, b.burst, b.per_minute
        ),
        x_label: "simulated seconds",
        y_label: "messages (cumulative)",
        x_max,
        y_max: (n * 1.05).max(b.burst + 1.0),
        series: vec![
            Series {
                label: "arrived".into(),
                color: "#999999",
                dashed: false,
                points: cumulative(&b.arrivals_s, x_max),
            },
            Series {
                label: "allowed: burst + rate × t / 60 from the first send".into(),
                color: "#d62728",
                dashed: true,
                points: allowed,
            },
            Series {
                label: "sent (first 2xx)".into(),
                color: "#1f77b4",
                dashed: false,
                points: cumulative(&b.sends_s, x_max),
            },
        ],
    }
}

fn latency_chart(scenario: &str, quiet: &[(f64, f64)], simulated_s: f64) -> Chart {
    let x_max = quiet
        .iter()
        .map(|p| p.0)
        .fold(simulated_s, f64::max)
        .max(1.0);
    let slices = 100usize;
    let width = x_max / slices as f64;
    let mut by_slice: Vec<Vec<f64>> = vec![Vec::new(); slices];
    for &(t, l) in quiet {
        let i = ((t / width) as usize).min(slices - 1);
        by_slice[i].push(l);
    }
    let (mut p50, mut p99, mut max) = (Vec::new(), Vec::new(), Vec::new());
    for (i, v) in by_slice.iter_mut().enumerate() {
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let x = (i as f64 + 0.5) * width;
        p50.push((x, percentile(v, 0.5)));
        p99.push((x, percentile(v, 0.99)));
        max.push((x, v[v.len() - 1]));
    }
    let y_max = max.iter().map(|p| p.1).fold(0.0, f64::max) * 1.1;
    Chart {
        title: format!(
            "{scenario}: quiet accounts, accepted → upstream ({} messages)",
            quiet.len()
        ),
        x_label: "arrival, simulated seconds (100 slices)",
        y_label: "latency, seconds",
        x_max,
        y_max: y_max.max(0.1),
        series: vec![
            Series {
                label: "max".into(),
                color: "#d62728",
                dashed: false,
                points: max,
            },
            Series {
                label: "p99".into(),
                color: "#ff7f0e",
                dashed: false,
                points: p99,
            },
            Series {
                label: "p50".into(),
                color: "#1f77b4",
                dashed: false,
                points: p50,
            },
        ],
    }
}

/// Writes `dir/sends.svg` and `dir/latency.svg` (each when there is
/// something to draw); returns the file names written.
pub fn write(dir: &Path, scenario: &str, data: &PlotData) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    if let Some(b) = data.busiest.as_ref().filter(|b| !b.arrivals_s.is_empty()) {
        std::fs::write(dir.join("sends.svg"), sends_chart(scenario, b).svg())?;
        written.push("sends.svg".to_owned());
    }
    if !data.quiet.is_empty() {
        std::fs::write(
            dir.join("latency.svg"),
            latency_chart(scenario, &data.quiet, data.simulated_s).svg(),
        )?;
        written.push("latency.svg".to_owned());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(tick_step(100.0), 20.0);
        assert_eq!(tick_step(7.0), 2.0);
        assert_eq!(tick_step(3600.0), 1000.0);
        assert_eq!(tick_step(0.0), 1.0);
    }

    #[test]
    fn the_cumulative_line_ends_at_the_count_and_stays_small() {
        let times: Vec<f64> = (0..100_000).map(|i| f64::from(i) * 0.01).collect();
        let pts = cumulative(&times, 1000.0);
        assert!(pts.len() <= 2 * COLUMNS + 3, "{}", pts.len());
        assert_eq!(pts.last().map(|p| p.1), Some(100_000.0));
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn a_chart_is_one_svg_with_every_series() {
        let b = Busiest {
            account: "a<b".into(),
            arrivals_s: vec![0.0; 30],
            sends_s: (0..30).map(|i| f64::from(i) * 2.0).collect(),
            per_minute: 10.0,
            burst: 10.0,
        };
        let svg = sends_chart("x", &b).svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("a&lt;b"));
        let lat = latency_chart("x", &[(1.0, 0.5), (2.0, 1.5)], 10.0).svg();
        assert_eq!(lat.matches("<polyline").count(), 3);
    }
}
