//! `fdwatch analyze` on every input format, on bad input, and against the
//! live view: a recording replayed must give the verdicts the live watch gave.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/analyze/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Run `fdwatch analyze ARGS`: (exit code, stdout, stderr).
fn analyze(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("analyze")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run fdwatch analyze");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn analyze_json(args: &[&str]) -> (i32, Value, String) {
    let mut a = args.to_vec();
    a.push("--json");
    let (code, out, err) = analyze(&a);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("analyze --json printed no JSON ({e}): {out}\n{err}"));
    (code, v, err)
}

/// A live watch of a leaking workload, recorded once for all the tests that need it:
/// (the --record file, the live --json lines).
struct Recording {
    _dir: tempfile::TempDir,
    path: PathBuf,
    live: Vec<Value>,
}

fn recording() -> &'static Recording {
    static REC: OnceLock<Recording> = OnceLock::new();
    REC.get_or_init(|| {
        let w = Workload::start(&["--soft-limit", "160", "--leak", "netlink:40"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        let live = json_lines(&[
            "--pid",
            &w.pid_str(),
            "--count",
            "12",
            "--interval",
            "200ms",
            "--record",
            path.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(live.len(), 12);
        Recording {
            _dir: dir,
            path,
            live,
        }
    })
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn pattern_ids(v: &Value) -> Vec<String> {
    v["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn replay_gives_the_live_verdicts() {
    let rec = recording();
    let (code, v, err) = analyze_json(&[rec.path.to_str().unwrap()]);
    assert_eq!(v["inputs"][0]["format"], "jsonl");
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{v}");
    let s = &series[0];
    let steps = s["steps"].as_array().unwrap();
    assert_eq!(steps.len(), rec.live.len());
    for (i, (step, live)) in steps.iter().zip(&rec.live).enumerate() {
        assert_eq!(
            step["level"], live["verdict"]["level"],
            "level after sample {i}"
        );
        assert_eq!(step["fds"], live["fds"]);
    }
    let live_last = &rec.live.last().unwrap()["verdict"];
    let replayed = &s["verdict"];
    assert_eq!(replayed["level"], live_last["level"]);
    assert_eq!(s["level"], live_last["level"]);
    assert_eq!(pattern_ids(replayed), pattern_ids(live_last));
    assert!(pattern_ids(replayed).contains(&"netlink_accumulation".to_string()));
    let (fl, fr) = (&live_last["forecast"], &replayed["forecast"]);
    assert!(
        fl.is_object(),
        "a 40/s leak toward 160 has a forecast: {live_last}"
    );
    assert_eq!(fl["limit"], fr["limit"]);
    for key in ["eta", "eta_earliest"] {
        let (a, b) = (fl[key].as_f64().unwrap(), fr[key].as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1.0),
            "{key}: live {a}, replayed {b}"
        );
    }
    assert_eq!(replayed["reasons"], live_last["reasons"]);
    let level_code = match live_last["level"].as_str().unwrap() {
        "OK" => 0,
        "WARNING" => 1,
        "CRITICAL" => 2,
        other => panic!("{other}"),
    };
    assert_eq!(code, level_code, "{err}");
}

#[test]
fn text_report_tells_the_timeline() {
    let rec = recording();
    let (code, out, err) = analyze(&[rec.path.to_str().unwrap()]);
    assert!(code == 1 || code == 2, "{out}\n{err}");
    let pid = rec.live[0]["pid"].as_i64().unwrap();
    assert!(out.contains(&format!("pid {pid} (")), "{out}");
    assert!(out.contains("timeline:"), "{out}");
    assert!(out.contains("OK until "), "{out}");
    assert!(out.contains("EMFILE in"), "{out}");
    assert!(out.contains("netlink_accumulation"), "{out}");
    assert!(out.contains("evidence:"), "{out}");
    assert!(out.contains("forecast: soft RLIMIT_NOFILE 160"), "{out}");
}

#[test]
fn plot_is_well_formed_svg_with_series_limits_forecast_and_title() {
    let rec = recording();
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("plot.svg");
    let (code, _, err) = analyze(&[
        rec.path.to_str().unwrap(),
        "--plot",
        svg_path.to_str().unwrap(),
    ]);
    assert!(code == 1 || code == 2, "{err}");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").to_string())
        .collect();
    let has = |needle: &str| texts.iter().any(|t| t.contains(needle));
    let pid = rec.live[0]["pid"].as_i64().unwrap();
    assert!(
        has(&format!("pid {pid} (leaky-workload)")),
        "title: {texts:?}"
    );
    assert!(has("soft limit 160"), "limit legend: {texts:?}");
    assert!(has("forecast: limit in"), "{texts:?}");
    assert!(has("open fds (total)"), "{texts:?}");
    assert!(has("open file descriptors"), "y axis: {texts:?}");
    assert!(has("time (UTC"), "x axis: {texts:?}");
    assert!(has("CRITICAL") || has("WARNING"), "marker: {texts:?}");
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") || n.has_tag_name("path"))
        .count();
    // total, a kind, the soft limit, the fit and the forecast at least.
    assert!(lines >= 5, "{lines} lines");
    assert!(
        doc.descendants().any(|n| n.has_tag_name("polygon")),
        "trend interval"
    );
}

#[test]
fn truncated_last_line_is_reported_and_skipped() {
    let rec = recording();
    let text = std::fs::read_to_string(&rec.path).unwrap();
    let cut = &text[..text.trim_end().len() - 40];
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "cut.jsonl", cut);
    let (code, v, err) = analyze_json(&[&f]);
    assert!(code == 1 || code == 2, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("line 12 is truncated"), "{err}");
    assert_eq!(v["series"][0]["samples"], 11);
    assert_eq!(v["inputs"][0]["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn pid_restart_starts_a_new_series() {
    let rec = recording();
    let text = std::fs::read_to_string(&rec.path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut out = String::new();
    for (i, mut l) in lines.into_iter().enumerate() {
        if i >= 6 {
            let st = l["start_time"].as_u64().unwrap();
            l["start_time"] = (st + 500).into();
        }
        out.push_str(&l.to_string());
        out.push('\n');
    }
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "restart.jsonl", &out);
    let (_, v, err) = analyze_json(&[&f]);
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{v}\n{err}");
    assert_eq!(series[0]["samples"], 6);
    assert_eq!(series[1]["samples"], 6);
    assert_eq!(series[0]["pid"], series[1]["pid"]);
    let notes = series[1]["notes"].to_string();
    assert!(notes.contains("restarted"), "{notes}");
    let (_, text, _) = analyze(&[&f]);
    assert!(text.contains("analysed as a new series"), "{text}");
}

#[test]
fn state_file() {
    let (code, v, err) = analyze_json(&[&fixture("state.json")]);
    assert_eq!(v["inputs"][0]["format"], "state", "{err}");
    let s = &v["series"][0];
    assert_eq!(s["comm"], "leaky-workload");
    assert_eq!(s["samples"], 8);
    // A pipe leak toward a soft limit of 200, well within the hour.
    assert_eq!(s["verdict"]["forecast"]["limit"], 200);
    assert!(pattern_ids(&s["verdict"]).contains(&"event_plumbing".to_string()));
    assert_eq!(code, 2);
}

#[test]
fn csv_with_and_without_header() {
    let (code, v, err) = analyze_json(&[&fixture("header.csv")]);
    assert_eq!(v["inputs"][0]["format"], "csv", "{err}");
    let s = &v["series"][0];
    assert_eq!(s["samples"], 40);
    assert_eq!(s["verdict"]["soft_limit"], 256);
    let slope = s["verdict"]["total"]["slope"].as_f64().unwrap();
    assert!((slope - 0.1).abs() < 1e-9, "1 fd per 10 s: {slope}");
    // 117 fds left at 0.1/s: ~20 minutes, within the 1 h warning (and past
    // the 5-minute warm-up: 6.5 minutes of data).
    let eta = s["verdict"]["forecast"]["eta"].as_f64().unwrap();
    assert!((eta - 1170.0).abs() < 1.0, "{eta}");
    assert_eq!(code, 1);

    let (code, v, _) = analyze_json(&[&fixture("noheader.csv")]);
    let s = &v["series"][0];
    assert_eq!(s["samples"], 30);
    assert!(s["verdict"]["soft_limit"].is_null());
    assert!(s["verdict"]["forecast"].is_null());
    assert_eq!(code, 0);
}

#[test]
fn prometheus_range_query_two_labelled_series() {
    let (code, v, err) = analyze_json(&[&fixture("prometheus_range.json")]);
    assert_eq!(v["inputs"][0]["format"], "prometheus", "{err}");
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    let api = series
        .iter()
        .find(|s| s["labels"]["job"] == "api")
        .expect("api series");
    assert_eq!(api["labels"]["instance"], "api-1:9100");
    assert!(api["labels"].get("__name__").is_none());
    assert_eq!(api["name"], "{instance=\"api-1:9100\",job=\"api\"}");
    assert_eq!(api["samples"], 40);
    assert_eq!(
        api["verdict"]["soft_limit"], 1024,
        "paired with process_max_fds"
    );
    assert_eq!(api["level"], "WARNING");
    let worker = series
        .iter()
        .find(|s| s["labels"]["job"] == "worker")
        .unwrap();
    assert_eq!(worker["verdict"]["soft_limit"], 65536);
    assert_eq!(worker["level"], "OK");
    assert_eq!(v["level"], "WARNING");
    assert_eq!(code, 1, "the worst series decides");
}

#[test]
fn duplicates_disorder_and_gaps_are_handled_and_said() {
    let (code, v, err) = analyze_json(&[&fixture("messy.csv")]);
    let s = &v["series"][0];
    assert_eq!(s["samples"], 30, "{err}");
    assert_eq!(s["duplicates_dropped"], 2);
    assert_eq!(s["reordered"], 1);
    assert_eq!(s["longest_gap"]["seconds"], 60.0);
    let notes = s["notes"].to_string();
    assert!(notes.contains("2 exact duplicate"), "{notes}");
    assert!(notes.contains("out of time order"), "{notes}");
    assert!(notes.contains("longest gap 1m00s"), "{notes}");
    // The steady 0.2/s leak is still seen exactly once the data is cleaned.
    let slope = s["verdict"]["total"]["slope"].as_f64().unwrap();
    assert!((slope - 0.2).abs() < 1e-9, "{slope}");
    assert_eq!(code, 1);
    let (_, text, _) = analyze(&[&fixture("messy.csv")]);
    assert!(text.contains("note: longest gap 1m00s"), "{text}");
}

#[test]
fn wrong_kind_of_file_is_one_line_and_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "notes.txt",
        "hello world\nthis is not a recording\n",
    );
    let (code, out, err) = analyze(&[&f]);
    assert_eq!(code, 3);
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("fdwatch: "), "{err}");
    assert!(
        err.contains("expected") || err.contains("not a recording"),
        "{err}"
    );

    // Forced to the wrong format: the message names what was expected.
    let (code, _, err) = analyze(&[&fixture("header.csv"), "--format", "state"]);
    assert_eq!(code, 3);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not an fdwatch state file"), "{err}");

    let (code, _, err) = analyze(&[&fixture("state.json"), "--format", "prometheus"]);
    assert_eq!(code, 3);
    assert!(err.contains("Prometheus query_range"), "{err}");

    // An instant query is not a range query.
    let f = write(
        dir.path(),
        "instant.json",
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
    );
    let (code, _, err) = analyze(&[&f]);
    assert_eq!(code, 3);
    assert!(err.contains("query_range"), "{err}");

    let (code, _, err) = analyze(&["/nonexistent/rec.jsonl"]);
    assert_eq!(code, 3);
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn an_unreadable_file_among_good_ones_still_reports_the_rest() {
    let (code, out, err) = analyze(&[&fixture("header.csv"), "/nonexistent/x.csv"]);
    assert_eq!(code, 3, "unreadable input raises the exit code");
    assert!(out.contains("header (CSV): WARNING"), "{out}");
    assert!(err.contains("/nonexistent/x.csv"), "{err}");
}

#[test]
fn a_corrupt_middle_line_is_skipped_and_said_many_refuse_the_file() {
    let rec = recording();
    let text = std::fs::read_to_string(&rec.path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len();
    lines[5] = "{\"schema\":1,\"pid\": garbage".into();
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "one-bad.jsonl", &(lines.join("\n") + "\n"));
    let (code, v, err) = analyze_json(&[&f]);
    assert!(code == 1 || code == 2, "analysed: {err}");
    assert!(err.contains("skipped 1 corrupt line(s) (line 6"), "{err}");
    assert_eq!(v["series"][0]["samples"], (n - 1) as u64);

    // Half the file corrupt: not a recording to trust, exit 3, one line.
    for l in lines.iter_mut().skip(1).step_by(2) {
        *l = "not json".into();
    }
    let f = write(dir.path(), "many-bad.jsonl", &(lines.join("\n") + "\n"));
    let (code, _, err) = analyze(&[&f]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("are not samples"), "{err}");
}
