//! A results file as people read it: one comparison table with the ratios
//! xdptcp / kernel, and an SVG picture (throughput bars, rr latency
//! percentiles), kernel against xdptcp.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

/// The three client→server pairs, in table order.
pub const PAIRS: [(&str, &str, &str); 3] = [
    ("kernel", "kernel", "kernel↔kernel"),
    ("kernel", "xdptcp", "kernel→xdptcp"),
    ("xdptcp", "xdptcp", "xdptcp↔xdptcp"),
];

/// Runs of one row: same workload, connections, message size and label.
struct Group<'a> {
    title: String,
    workload: String,
    /// Indexed like `PAIRS`.
    runs: [Option<&'a Value>; 3],
    errors: u64,
}

fn num(run: Option<&Value>, key: &str) -> Option<f64> {
    run.and_then(|r| r.get(key)).and_then(Value::as_f64)
}

fn groups(doc: &Value) -> Vec<Group<'_>> {
    let mut order: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, Group<'_>> = BTreeMap::new();
    for run in doc["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let workload = run["workload"].as_str().unwrap_or("?").to_string();
        let conns = run["conns"].as_u64().unwrap_or(0);
        let msg = run["msg_bytes"].as_u64();
        let label = run["label"].as_str();
        let mut title = match msg {
            Some(m) if workload != "crr" => format!("{workload} {m}B x{conns}"),
            _ => format!("{workload} x{conns}"),
        };
        if let Some(l) = label {
            title.push_str(&format!(" ({l})"));
        }
        let pair = PAIRS.iter().position(|(c, s, _)| run["client"].as_str() == Some(c) && run["server"].as_str() == Some(s));
        let g = map.entry(title.clone()).or_insert_with(|| {
            order.push(title.clone());
            Group { title, workload: workload.clone(), runs: [None; 3], errors: 0 }
        });
        g.errors += run["errors"].as_u64().unwrap_or(0);
        if let Some(p) = pair {
            g.runs[p] = Some(run);
        }
    }
    order.into_iter().filter_map(|t| map.remove(&t)).collect()
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The headline figure of one run.
fn cell(workload: &str, run: Option<&Value>) -> String {
    let dash = "—".to_string();
    match workload {
        "stream" => num(run, "gbit_per_s").map_or(dash, |v| format!("{v:.2} Gbit/s")),
        "rr" => match (num(run, "p50_us"), num(run, "p99_us")) {
            (Some(a), Some(b)) => format!("{a:.1}/{b:.1} µs {}", num(run, "ops_per_s").map_or(String::new(), |o| format!("{}/s", si(o)))),
            _ => dash,
        },
        "crr" => num(run, "conns_per_s").map_or(dash, |v| format!("{}/s p50 {:.0} µs", si(v), num(run, "p50_us").unwrap_or(0.0))),
        "hold" => num(run, "server_bytes_per_conn").map_or(dash, |v| format!("{v:.0} B/conn")),
        _ => dash,
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn times(r: Option<f64>) -> String {
    r.map_or("—".to_string(), |r| format!("{r:.2}×"))
}

/// xdptcp relative to the kernel↔kernel run of the same group.
fn ratios(g: &Group<'_>, pair: usize) -> String {
    let (run, base) = (g.runs[pair], g.runs[0]);
    match g.workload.as_str() {
        "stream" => times(ratio(num(run, "gbit_per_s"), num(base, "gbit_per_s"))),
        "crr" => times(ratio(num(run, "conns_per_s"), num(base, "conns_per_s"))),
        "hold" => times(ratio(num(run, "server_bytes_per_conn"), num(base, "server_bytes_per_conn"))),
        "rr" => {
            let p50 = ratio(num(run, "p50_us"), num(base, "p50_us"));
            let p99 = ratio(num(run, "p99_us"), num(base, "p99_us"));
            if p50.is_none() && p99.is_none() {
                "—".to_string()
            } else {
                format!("{} / {}", times(p50), times(p99))
            }
        }
        _ => "—".to_string(),
    }
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// The comparison table: one row per group, the headline figure of each
/// pair, and xdptcp / kernel↔kernel ratios (throughput: higher is better;
/// rr latency p50 / p99 and hold memory: lower is better).
pub fn table(doc: &Value) -> String {
    let header = vec![
        "workload".to_string(),
        PAIRS[0].2.to_string(),
        PAIRS[1].2.to_string(),
        PAIRS[2].2.to_string(),
        "kernel→xdptcp / k".to_string(),
        "xdptcp↔xdptcp / k".to_string(),
        "errors".to_string(),
    ];
    let mut rows = vec![header];
    for g in groups(doc) {
        let mut title = g.title.clone();
        if g.workload == "hold" {
            if let Some(held) = g.runs.iter().flatten().filter_map(|r| r["conns_held"].as_u64()).max() {
                title.push_str(&format!(" held {held}"));
            }
        }
        rows.push(vec![
            title,
            cell(&g.workload, g.runs[0]),
            cell(&g.workload, g.runs[1]),
            cell(&g.workload, g.runs[2]),
            ratios(&g, 1),
            ratios(&g, 2),
            g.errors.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row.iter().zip(&widths).map(|(s, w)| pad(s, *w)).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    if let Some(io) = doc.get("io_limit").and_then(|v| v["rx_frames_per_s"].as_f64()) {
        out.push_str(&format!("raw AF_XDP frame rate on this pair (64 B, rxdrop): {} frames/s\n", si(io)));
    }
    if let Some(rt) = doc.get("io_round_trip").and_then(|v| v["p50_us"].as_f64()) {
        let p99 = doc["io_round_trip"]["p99_us"].as_f64().unwrap_or(f64::NAN);
        out.push_str(&format!("raw AF_XDP round trip on this pair (130 B frame, no TCP): p50 {rt:.2} µs, p99 {p99:.2} µs\n"));
    }
    if let Some(io) = doc.get("io_limit_mtu").and_then(|v| v["rx_frames_per_s"].as_f64()) {
        out.push_str(&format!("raw AF_XDP frame rate on this pair (1514 B, rxdrop): {} frames/s\n", si(io)));
    }
    out
}

const COLOURS: [RGBColor; 3] = [RGBColor(90, 90, 90), RGBColor(70, 130, 200), RGBColor(220, 100, 30)];

/// Draws throughput bars (stream Gbit/s, crr k conns/s) and rr latency
/// percentiles, one colour per pair.
pub fn svg(doc: &Value, path: &Path) -> Result<(), String> {
    let gs = groups(doc);
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let title = format!(
        "xdptcp vs kernel TCP — {} — {}",
        doc["date"].as_str().unwrap_or("?"),
        doc["machine"].as_str().unwrap_or("?")
    );
    let root = root.titled(&title, ("sans-serif", 18)).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(400);
    let (left, right) = top.split_horizontally(600);
    bars(&left, &gs, "stream", "Gbit/s", "stream throughput (higher is better)", |r| num(r, "gbit_per_s"))?;
    bars(&right, &gs, "crr", "k connections/s", "connect/request/close (higher is better)", |r| num(r, "conns_per_s").map(|v| v / 1e3))?;
    latency(&bottom, &gs)?;
    root.present().map_err(|e| e.to_string())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn bars(area: &Area<'_>, gs: &[Group<'_>], workload: &str, unit: &str, caption: &str, value: impl Fn(Option<&Value>) -> Option<f64>) -> Result<(), String> {
    let rows: Vec<&Group<'_>> = gs.iter().filter(|g| g.workload == workload).collect();
    let max = rows.iter().flat_map(|g| g.runs.iter().map(|r| value(*r).unwrap_or(0.0))).fold(0.0, f64::max).max(1e-3);
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..(n * 4) as f64, 0.0..max * 1.15)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(unit)
        .x_labels(0)
        .draw()
        .map_err(|e| e.to_string())?;
    for (p, (_, _, name)) in PAIRS.iter().enumerate() {
        let colour = COLOURS[p];
        let rects: Vec<_> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, g)| value(g.runs[p]).map(|v| (i, v)))
            .map(|(i, v)| {
                let x = (i * 4 + p) as f64 + 0.5;
                Rectangle::new([(x, 0.0), (x + 0.9, v)], colour.filled())
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    // Each group's name above its bars.
    let names = rows.iter().enumerate().map(|(i, g)| {
        let short = g.title.strip_prefix(workload).unwrap_or(&g.title).trim().to_string();
        Text::new(short, ((i * 4) as f64 + 0.5, max * 1.08), ("sans-serif", 13).into_font())
    });
    chart.draw_series(names).map_err(|e| e.to_string())?;
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(|e| e.to_string())?;
    Ok(())
}

fn latency(area: &Area<'_>, gs: &[Group<'_>]) -> Result<(), String> {
    const KEYS: [(&str, &str); 4] = [("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("p999_us", "p99.9")];
    let rows: Vec<&Group<'_>> = gs.iter().filter(|g| g.workload == "rr").collect();
    let panels = area.split_evenly((1, rows.len().max(1)));
    for (g, panel) in rows.iter().zip(panels.iter()) {
        let max = g.runs.iter().flat_map(|r| KEYS.iter().filter_map(|(k, _)| num(*r, k))).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{}: latency µs (lower is better)", g.title), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5..3.5, (0.5f64..max * 2.0).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(4)
            .x_label_formatter(&|x: &f64| KEYS.get(x.round() as usize).map(|k| k.1.to_string()).unwrap_or_default())
            .draw()
            .map_err(|e| e.to_string())?;
        for (p, (_, _, name)) in PAIRS.iter().enumerate() {
            let pts: Vec<(f64, f64)> = KEYS.iter().enumerate().filter_map(|(i, (k, _))| num(g.runs[p], k).map(|v| (i as f64, v))).collect();
            if pts.is_empty() {
                continue;
            }
            let colour = COLOURS[p];
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, colour.filled()))).map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(workload: &str, client: &str, server: &str, extra: Value) -> Value {
        let mut r = json!({"workload": workload, "client": client, "server": server, "conns": 1, "msg_bytes": 64, "errors": 0, "label": null});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    }

    fn doc() -> Value {
        json!({"date": "2026-11-24", "machine": "test", "runs": [
            run("crr", "kernel", "kernel", json!({"conns_per_s": 10000.0, "p50_us": 60.0})),
            run("crr", "xdptcp", "xdptcp", json!({"conns_per_s": 52000.0, "p50_us": 13.0, "errors": 2})),
            run("rr", "kernel", "kernel", json!({"p50_us": 20.0, "p99_us": 40.0, "p90_us": 25.0, "p999_us": 60.0})),
            run("rr", "kernel", "xdptcp", json!({"p50_us": 10.0, "p99_us": 20.0})),
            run("rr", "xdptcp", "xdptcp", json!({"p50_us": 4.0, "p99_us": 6.0, "p90_us": 5.0, "p999_us": null})),
            run("stream", "kernel", "kernel", json!({"gbit_per_s": 8.0, "msg_bytes": null, "label": "offloads off"})),
            run("stream", "xdptcp", "xdptcp", json!({"gbit_per_s": 4.0, "msg_bytes": null, "label": "offloads off"})),
        ]})
    }

    #[test]
    fn table_has_ratios_dashes_and_errors() {
        let t = table(&doc());
        let crr = t.lines().find(|l| l.starts_with("crr x1")).expect("crr row");
        assert!(crr.contains("5.20×"), "{crr}");
        assert!(crr.contains("—"), "the missing kernel→xdptcp pair shows a dash: {crr}");
        assert!(crr.trim_end().ends_with('2'), "errors summed: {crr}");
        let rr = t.lines().find(|l| l.starts_with("rr 64B x1")).expect("rr row");
        assert!(rr.contains("0.50× / 0.50×"), "{rr}");
        assert!(rr.contains("0.20× / 0.15×"), "{rr}");
        let stream = t.lines().find(|l| l.starts_with("stream x1 (offloads off)")).expect("stream row");
        assert!(stream.contains("0.50×") && stream.contains("8.00 Gbit/s"), "{stream}");
        // Columns line up although ×, ↔ and µ are several bytes long: the
        // second column starts at the same character in every row.
        let lines: Vec<Vec<char>> = t.lines().map(|l| l.chars().collect()).collect();
        let header: String = lines[0].iter().collect();
        let start = header[..header.find("kernel↔kernel").unwrap()].chars().count();
        for l in lines.iter().skip(2).take(4) {
            assert!(l[start - 1] == ' ' && l[start] != ' ', "misaligned: {}", l.iter().collect::<String>());
        }
    }

    #[test]
    fn svg_is_written_and_survives_empty_documents() {
        let dir = std::env::temp_dir();
        let p = dir.join(format!("xdptcp-report-{}.svg", std::process::id()));
        svg(&doc(), &p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("<svg") && text.contains("xdptcp↔xdptcp"), "{}", &text[..100.min(text.len())]);
        svg(&json!({"runs": []}), &p).unwrap();
        svg(&json!({}), &p).unwrap();
        let _ = std::fs::remove_file(&p);
        assert!(table(&json!({})).lines().count() >= 2);
    }
}
