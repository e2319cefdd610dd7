//! `ironsight-bench plot`: PNG charts of a comparison run (tests/bench/compare.py's
//! results.json). One chart per throughput scenario, two panels: delivered messages/s against
//! the offered rate (a point is filled when nothing was lost), and p99 latency against the
//! offered rate, one line per broker. Runs that delivered nothing (a broker that failed) are
//! left out. One chart per CPU-curve scenario, two panels: the broker's CPU against the offered
//! rate (a point is filled when the broker delivered that rate), and its CPU time per delivered
//! message, one line per broker.
//!
//! Text is drawn with `ab_glyph` from a TrueType file (DejaVu Sans by default), so no system font
//! library is linked.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde::Deserialize;

/// Where Debian's fonts-dejavu-core puts its sans-serif face.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 560;

#[derive(Debug, Deserialize)]
pub struct Results {
    pub machine: String,
    pub date: String,
    /// Throughput scenarios; a run of the CPU curve alone has none.
    #[serde(default)]
    pub scenarios: Vec<Scenario>,
    /// CPU at fixed offered rates; runs made before it existed have none.
    #[serde(default)]
    pub cpu_curve: Vec<CpuScenario>,
}

#[derive(Debug, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub title: String,
    /// Broker name -> its steps, in the order they ran.
    pub brokers: Vec<BrokerSteps>,
}

#[derive(Debug, Deserialize)]
pub struct BrokerSteps {
    pub broker: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
pub struct Step {
    /// Offered rate (messages published per second).
    pub rate: f64,
    pub received_rate: f64,
    pub lost: u64,
    pub p99_us: f64,
}

#[derive(Debug, Deserialize)]
pub struct CpuScenario {
    pub name: String,
    pub title: String,
    pub brokers: Vec<CpuBroker>,
}

#[derive(Debug, Deserialize)]
pub struct CpuBroker {
    pub broker: String,
    /// One per offered rate that ran (a failed run has none).
    pub points: Vec<CpuPoint>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
pub struct CpuPoint {
    /// Offered rate (messages delivered per second, were the broker to keep up).
    pub rate: f64,
    /// Broker CPU in the measured window, percent of one core.
    pub cpu_percent: f64,
    /// Broker CPU µs per message delivered in the window; none when nothing was delivered.
    pub us_per_message: Option<f64>,
    /// Whether the broker delivered the offered rate, with nothing lost.
    pub kept_up: bool,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// Draws every scenario of `input` into `out_dir`; returns the files written.
pub fn plot(input: &Path, out_dir: &Path, font: &Path) -> Result<Vec<PathBuf>, String> {
    let text = std::fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let results: Results =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", input.display()))?;
    let font_bytes = std::fs::read(font).map_err(|e| format!("font {}: {e}", font.display()))?;
    let font_bytes: &'static [u8] = Box::leak(font_bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, font_bytes)
        .map_err(|_| format!("{}: not a usable TrueType font", font.display()))?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let mut written = Vec::new();
    for scenario in results
        .scenarios
        .iter()
        .filter(|s| s.brokers.iter().any(|b| !b.steps.is_empty()))
    {
        let path = out_dir.join(format!("{}.png", scenario.name));
        draw(scenario, &results, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    for scenario in results
        .cpu_curve
        .iter()
        .filter(|s| s.brokers.iter().any(|b| !b.points.is_empty()))
    {
        let path = out_dir.join(format!("{}.png", scenario.name));
        draw_cpu(scenario, &results, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn draw_cpu(
    scenario: &CpuScenario,
    results: &Results,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!("{} ({}, {})", scenario.title, results.machine, results.date);
    let root = root.titled(&caption, ("sans-serif", 20))?;
    let (left, right) = root.split_horizontally(WIDTH / 2);
    let points = || scenario.brokers.iter().flat_map(|b| b.points.iter());
    let rates = points().map(|p| p.rate);
    let x = (rates.clone().fold(f64::MAX, f64::min) / 1.3)..(rates.fold(1.0, f64::max) * 1.3);
    let cpu_max = points().map(|p| p.cpu_percent).fold(10.0, f64::max) * 1.1;
    cpu_panel(
        &left,
        scenario,
        (
            "broker CPU vs offered rate (hollow: fell behind)",
            "CPU, % of one core",
        ),
        x.clone(),
        0.0..cpu_max,
        |p| Some(p.cpu_percent),
    )?;
    let us = || {
        points()
            .filter_map(|p| p.us_per_message)
            .filter(|us| *us > 0.0)
    };
    let (us_min, us_max) = (us().fold(f64::MAX, f64::min), us().fold(0.0, f64::max));
    let us_range = if us_min <= us_max {
        (us_min / 2.0)..(us_max * 2.0)
    } else {
        0.1..10.0 // nothing was delivered anywhere: an empty panel
    };
    cpu_panel(
        &right,
        scenario,
        (
            "broker CPU per delivered message (log scale)",
            "CPU µs per message",
        ),
        x,
        us_range.log_scale(),
        |p| p.us_per_message,
    )?;
    root.present()?;
    Ok(())
}

/// One panel of a CPU chart: `value` of every point that has one against the offered rate (log
/// scale), a line per broker, a filled dot where the broker kept up.
fn cpu_panel<DB, Y>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    scenario: &CpuScenario,
    (caption, y_desc): (&str, &str),
    x: std::ops::Range<f64>,
    y: Y,
    value: impl Fn(&CpuPoint) -> Option<f64>,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x.log_scale(), y)?;
    chart
        .configure_mesh()
        // On log axes the fine lines crowd into grey bands near each power of ten.
        .light_line_style(TRANSPARENT)
        .x_desc("offered messages/s (delivered, log scale)")
        .y_desc(y_desc)
        .x_label_formatter(&|v| human(*v))
        .draw()?;
    for (i, broker) in scenario.brokers.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut points: Vec<(f64, f64, bool)> = broker
            .points
            .iter()
            .filter_map(|p| value(p).map(|v| (p.rate, v, p.kept_up)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line = points.iter().map(|&(rate, v, _)| (rate, v));
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))?
            .label(broker.broker.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&(rate, v, kept_up)| {
            let style = if kept_up {
                color.filled()
            } else {
                color.stroke_width(2)
            };
            Circle::new((rate, v), 5, style)
        }))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

fn draw(
    scenario: &Scenario,
    results: &Results,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!("{} ({}, {})", scenario.title, results.machine, results.date);
    let root = root.titled(&caption, ("sans-serif", 20))?;
    let (left, right) = root.split_horizontally(WIDTH / 2);
    throughput(&left, scenario)?;
    latency(&right, scenario)?;
    root.present()?;
    Ok(())
}

fn max_of(scenario: &Scenario, f: impl Fn(&Step) -> f64) -> f64 {
    scenario
        .brokers
        .iter()
        .flat_map(|b| b.steps.iter())
        .map(f)
        .fold(1.0, f64::max)
}

fn throughput<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    scenario: &Scenario,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let x_max = max_of(scenario, |s| s.rate) * 1.05;
    let y_max = max_of(scenario, |s| s.received_rate) * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption("delivered vs offered (filled: no loss)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("offered messages/s (published)")
        .y_desc("delivered messages/s")
        .y_label_formatter(&|v| human(*v))
        .x_label_formatter(&|v| human(*v))
        .draw()?;
    for (i, broker) in scenario.brokers.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut steps: Vec<Step> = delivered(broker).collect();
        steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        chart
            .draw_series(LineSeries::new(
                steps.iter().map(|s| (s.rate, s.received_rate)),
                color.stroke_width(2),
            ))?
            .label(broker.broker.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(steps.iter().map(|s| {
            let style = if s.lost == 0 {
                color.filled()
            } else {
                color.stroke_width(2)
            };
            Circle::new((s.rate, s.received_rate), 5, style)
        }))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

fn latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    scenario: &Scenario,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let x_max = max_of(scenario, |s| s.rate) * 1.05;
    let y_max = max_of(scenario, |s| s.p99_us / 1000.0) * 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption("p99 latency vs offered (log scale)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, (0.01..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered messages/s (published)")
        .y_desc("p99 latency, ms")
        .x_label_formatter(&|v| human(*v))
        .draw()?;
    for (i, broker) in scenario.brokers.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut steps: Vec<Step> = delivered(broker).filter(|s| s.p99_us > 0.0).collect();
        steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let points = steps
            .iter()
            .map(|s| (s.rate, (s.p99_us / 1000.0).max(0.01)));
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(broker.broker.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(points.map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

/// The steps in which the broker delivered something.
fn delivered(broker: &BrokerSteps) -> impl Iterator<Item = Step> + '_ {
    broker
        .steps
        .iter()
        .filter(|s| s.received_rate > 0.0)
        .copied()
}

/// 3200000 -> "3.2M", 15000 -> "15k".
pub fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(human(3_200_000.0), "3.2M");
        assert_eq!(human(15_000.0), "15k");
        assert_eq!(human(950.0), "950");
    }

    #[test]
    fn a_results_file_becomes_one_png_per_scenario() {
        if !Path::new(DEFAULT_FONT).exists() {
            panic!("{DEFAULT_FONT} is missing: tests/run installs fonts-dejavu-core");
        }
        let dir = std::env::temp_dir().join(format!("ironsight-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("results.json");
        let step = |rate: f64, lost| serde_json::json!({"rate": rate, "received_rate": rate * 200.0, "lost": lost, "p99_us": rate / 10.0});
        let doc = serde_json::json!({
            "machine": "test", "date": "2026-11-25",
            "scenarios": [
                {"name": "fanout-qos0", "title": "fan-out", "brokers": [
                    {"broker": "a", "steps": [step(1000.0, 0), step(2000.0, 0), step(4000.0, 5)]},
                    {"broker": "b", "steps": [step(1000.0, 0), step(2000.0, 3)]}]},
                {"name": "empty", "title": "nothing ran", "brokers": [{"broker": "a", "steps": []}]}
            ]
        });
        std::fs::write(&input, doc.to_string()).unwrap();
        let written = plot(&input, &dir, Path::new(DEFAULT_FONT)).unwrap();
        assert_eq!(
            written,
            [dir.join("fanout-qos0.png")],
            "a scenario without steps gets no chart; no CPU curve, no CPU chart"
        );
        let png = std::fs::read(&written[0]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
        assert!(
            png.len() > 10_000,
            "the chart has content: {} bytes",
            png.len()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Proves a CPU-curve-only results file (no throughput scenarios) gives one chart per CPU
    /// scenario with points, including a broker that fell behind and a point that delivered
    /// nothing (no µs per message), and none for a scenario where every broker failed.
    #[test]
    fn a_cpu_curve_becomes_one_png_per_scenario() {
        let dir = std::env::temp_dir().join(format!("ironsight-plot-cpu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("results.json");
        let point = |rate: f64, cpu: f64, kept_up| serde_json::json!({"rate": rate, "cpu_percent": cpu, "us_per_message": cpu * 1e4 / rate, "kept_up": kept_up});
        let doc = serde_json::json!({
            "machine": "test", "date": "2026-11-30",
            "cpu_curve": [
                {"name": "cpu-p2p-qos1", "title": "p2p", "brokers": [
                    {"broker": "a", "points": [point(1000.0, 2.0, true), point(20000.0, 15.0, true), point(100000.0, 60.0, true)]},
                    {"broker": "b", "points": [point(1000.0, 3.0, true), point(100000.0, 99.0, false),
                        {"rate": 200000.0, "cpu_percent": 100.0, "us_per_message": null, "kept_up": false}]}]},
                {"name": "cpu-failed", "title": "nothing ran", "brokers": [{"broker": "a", "points": []}]}
            ]
        });
        std::fs::write(&input, doc.to_string()).unwrap();
        let written = plot(&input, &dir, Path::new(DEFAULT_FONT)).unwrap();
        assert_eq!(written, [dir.join("cpu-p2p-qos1.png")]);
        let png = std::fs::read(&written[0]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
        assert!(
            png.len() > 10_000,
            "the chart has content: {} bytes",
            png.len()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
