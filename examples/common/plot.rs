//! Training curves as a hand-written SVG line plot and a CSV file.

use std::fmt::Write as _;
use std::path::Path;

use retrograd::{Error, Result};

/// One line of a plot.
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// CSS colour.
    pub color: &'a str,
    /// `(x, y)` points; non-finite ones are skipped.
    pub points: &'a [(f64, f64)],
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// Ticks at "nice" steps (1, 2, 5 × 10^k) covering `[lo, hi]`, with the number of decimals
/// that labels them all alike.
fn ticks(lo: f64, hi: f64) -> (Vec<f64>, usize) {
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| raw <= *s)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    (out, decimals)
}

fn label(v: f64, decimals: usize) -> String {
    if v.abs() >= 1e4 && decimals == 0 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v:.decimals$}")
    }
}

/// The SVG text of a line plot of `series`.
pub fn svg(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().filter(finite).copied())
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = (0.0, 1.0, 0.0, 1.0);
    if !all.is_empty() {
        x0 = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        x1 = all.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        y0 = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        y1 = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let pad = ((y1 - y0) * 0.05).max(1e-3);
        y0 -= pad;
        y1 += pad;
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
    }
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + (1.0 - (y - y0) / (y1 - y0)) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    let (yt, yd) = ticks(y0, y1);
    for t in yt {
        let y = sy(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            label(t, yd)
        );
    }
    let (xt, xd) = ticks(x0, x1);
    for t in xt {
        let x = sx(t);
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            H - BOTTOM,
            H - BOTTOM + 5.0,
            H - BOTTOM + 18.0,
            label(t, xd)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 10.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(y_label)
    );
    for (i, ser) in series.iter().enumerate() {
        let pts: Vec<String> = ser
            .points
            .iter()
            .filter(finite)
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if pts.len() == 1 {
            let (x, y) = pts[0].split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                s,
                r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#,
                ser.color
            );
        } else if !pts.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
                ser.color,
                pts.join(" ")
            );
        }
        let ly = TOP + 16.0 + 16.0 * i as f64;
        let lx = W - RIGHT - 150.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            ser.color,
            lx + 26.0,
            ly + 4.0,
            escape(ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes [`svg`] to `path`.
pub fn write_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    std::fs::write(path, svg(title, x_label, y_label, series))
        .map_err(|e| Error::Io(format!("writing plot {}: {e}", path.display())))
}

/// Writes a CSV file: `header` then one line per row (empty cells for `None`).
pub fn write_csv(path: &Path, header: &[&str], rows: &[Vec<Option<f64>>]) -> Result<()> {
    let mut s = header.join(",");
    s.push('\n');
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .map(|c| c.map_or(String::new(), |v| format!("{v}")))
            .collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    std::fs::write(path, s).map_err(|e| Error::Io(format!("writing {}: {e}", path.display())))
}

/// A training curve: named columns (the first is the x axis), one row per evaluation,
/// written as `<stem>.csv` and `<stem>.svg` side by side.
pub struct Curve {
    /// Column names; column 0 is x.
    pub columns: Vec<&'static str>,
    /// Rows of values (`None` = not measured at this point).
    pub rows: Vec<Vec<Option<f64>>>,
}

impl Curve {
    /// An empty curve with these columns.
    pub fn new(columns: &[&'static str]) -> Self {
        Curve {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (its length must match the columns).
    pub fn push(&mut self, row: Vec<Option<f64>>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// The `(x, y)` points of column `col`.
    pub fn points(&self, col: usize) -> Vec<(f64, f64)> {
        self.rows
            .iter()
            .filter_map(|r| Some((r[0]?, r[col]?)))
            .collect()
    }

    /// Writes `dir/<stem>.csv` (every column) and `dir/<stem>.svg` (the columns in `plot`,
    /// each `(column, colour)`). Returns the two paths.
    pub fn write(
        &self,
        dir: &Path,
        stem: &str,
        title: &str,
        y_label: &str,
        plot: &[(usize, &str)],
    ) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        let csv = dir.join(format!("{stem}.csv"));
        let svg_path = dir.join(format!("{stem}.svg"));
        write_csv(&csv, &self.columns, &self.rows)?;
        let pts: Vec<Vec<(f64, f64)>> = plot.iter().map(|&(c, _)| self.points(c)).collect();
        let series: Vec<Series> = plot
            .iter()
            .zip(&pts)
            .map(|(&(c, color), p)| Series {
                name: self.columns[c],
                color,
                points: p,
            })
            .collect();
        write_svg(&svg_path, title, self.columns[0], y_label, &series)?;
        Ok((csv, svg_path))
    }
}
