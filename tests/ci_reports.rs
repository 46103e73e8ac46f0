//! The reports of `run` and `assert` as CI systems read them: JUnit checked
//! by a real XSD validator against Jenkins' junit-10.xsd for every outcome,
//! the `--plot` chart parsed as XML, and `assert`'s progress on and off a
//! terminal, all on real processes.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::*;

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/junit-10.xsd")
}

/// xmllint (libxml2-utils) is the validator; without it the JUnit tests
/// cannot run: said loudly, and a failure when `CI` is set.
fn have_xmllint(what: &str) -> bool {
    let found = Command::new("xmllint")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    let msg = format!("SKIPPED: {what}: needs xmllint (apt-get install libxml2-utils)");
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set: this test must run)");
    }
    say_skipped(&msg);
    false
}

/// `xmllint --schema junit-10.xsd FILE`: Ok, or the validator's complaint.
fn validate(file: &Path) -> Result<(), String> {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema())
        .arg(file)
        .output()
        .expect("run xmllint");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What one JUnit file says, checked for the consistency CI tools assume:
/// the suite's counts are the elements' counts, a timestamp and a host.
#[derive(Debug, PartialEq)]
struct Junit {
    failures: usize,
    errors: usize,
    message: String,
}

fn read_junit(path: &Path) -> Junit {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JUnit file {}: {e}", path.display()));
    if let Err(e) = validate(path) {
        panic!("{} fails junit-10.xsd:\n{e}\n{text}", path.display());
    }
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("a testsuite");
    let count = |tag: &str| doc.descendants().filter(|n| n.has_tag_name(tag)).count();
    let attr = |name: &str| -> usize {
        suite
            .attribute(name)
            .unwrap_or_else(|| panic!("testsuite has no {name}: {text}"))
            .parse()
            .unwrap_or_else(|_| panic!("testsuite {name} is not a count: {text}"))
    };
    assert_eq!(attr("tests"), count("testcase"), "{text}");
    assert_eq!(attr("failures"), count("failure"), "{text}");
    assert_eq!(attr("errors"), count("error"), "{text}");
    assert_eq!(attr("skipped"), count("skipped"), "{text}");
    let ts = suite.attribute("timestamp").expect("timestamp");
    let shape: String = ts
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(shape, "dddd-dd-ddTdd:dd:dd", "{ts}");
    assert!(
        !suite.attribute("hostname").unwrap_or("").is_empty(),
        "{text}"
    );
    let message = doc
        .descendants()
        .find(|n| n.has_tag_name("failure") || n.has_tag_name("error"))
        .and_then(|n| n.attribute("message"))
        .unwrap_or("")
        .to_string();
    Junit {
        failures: count("failure"),
        errors: count("error"),
        message,
    }
}

fn run_junit(dir: &Path, name: &str, args: &[&str]) -> (i32, String, PathBuf) {
    let junit = dir.join(format!("{name}.xml"));
    let mut all = vec![args[0], "--junit", junit.to_str().unwrap()];
    all.extend(&args[1..]);
    let out = fdwatch(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        junit,
    )
}

/// The validator and the schema are real: the report fdwatch used to write
/// (no `errors` on `testsuite`) is refused.
#[test]
fn schema_refuses_a_testsuite_without_errors() {
    if !have_xmllint("junit-10.xsd refuses a testsuite without errors") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.xml");
    std::fs::write(
        &old,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"1\" failures=\"0\">\n  \
         <testsuite name=\"fdwatch\" tests=\"1\" failures=\"0\" time=\"0.5\">\n    \
         <testcase classname=\"fdwatch\" name=\"x\" time=\"0.5\"/>\n  </testsuite>\n</testsuites>\n",
    )
    .unwrap();
    let err = validate(&old).expect_err("a testsuite without errors must fail");
    assert!(err.contains("errors"), "{err}");
}

/// Pass, gate failure, UNKNOWN (a target that cannot be sampled) and a
/// command that cannot start: each writes a JUnit file valid against
/// junit-10.xsd, with a `<failure>` for a failed check and an `<error>` for
/// a check that could not be made.
#[test]
fn junit_is_valid_for_every_outcome() {
    if !have_xmllint("JUnit against junit-10.xsd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = bin();

    let (code, err, pass) = run_junit(
        dir.path(),
        "pass",
        &[
            "run",
            "--interval",
            "100ms",
            "--warmup",
            "300ms",
            "--max-growth",
            "5",
            "--",
            w,
            "workload",
            "--ignore-stdin",
            "--exit-after",
            "500ms",
            "--hold",
            "pipe:3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let j = read_junit(&pass);
    assert_eq!((j.failures, j.errors), (0, 0), "{j:?}");

    let (code, err, fail) = run_junit(
        dir.path(),
        "fail",
        &[
            "run",
            "--interval",
            "100ms",
            "--max-growth",
            "10",
            "--",
            w,
            "workload",
            "--ignore-stdin",
            "--exit-after",
            "1s",
            "--leak",
            "file:60",
        ],
    );
    assert_eq!(code, 2, "{err}");
    let j = read_junit(&fail);
    assert_eq!((j.failures, j.errors), (1, 0), "{j:?}");
    assert!(j.message.contains("--max-growth 10"), "{j:?}");

    // A pid that no longer exists: nothing can be sampled (UNKNOWN, exit 3).
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id().to_string();
    gone.wait().unwrap();
    let (code, err, unknown) = run_junit(
        dir.path(),
        "unknown",
        &["assert", "--pid", &pid, "--for", "1s"],
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let j = read_junit(&unknown);
    assert_eq!((j.failures, j.errors), (0, 1), "{j:?}");

    let (code, err, missing) = run_junit(
        dir.path(),
        "missing",
        &["run", "--", "/nonexistent/fdwatch-test-cmd"],
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("fdwatch: cannot start /nonexistent/fdwatch-test-cmd: "),
        "{err}"
    );
    let j = read_junit(&missing);
    assert_eq!((j.failures, j.errors), (0, 1), "{j:?}");
    assert!(j.message.contains("cannot start"), "{j:?}");
}

/// The texts of an SVG with their positions.
struct Svg {
    text: String,
}

impl Svg {
    fn texts(&self) -> Vec<(f64, f64, String)> {
        let doc = roxmltree::Document::parse(&self.text).expect("well-formed SVG");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| {
                let at = |a: &str| n.attribute(a).and_then(|v| v.parse().ok()).unwrap_or(0.0);
                (at("x"), at("y"), n.text().unwrap_or("").trim().to_string())
            })
            .collect()
    }

    /// The y axis: (value, pixel row) of each numeric tick label.
    fn y_ticks(&self) -> Vec<(f64, f64)> {
        let texts = self.texts();
        // Tick labels are right-aligned left of the plot, all at one x.
        let numeric: Vec<(f64, f64, f64)> = texts
            .iter()
            .filter_map(|(x, y, t)| t.parse::<f64>().ok().map(|v| (*x, *y, v)))
            .collect();
        let axis_x = numeric.iter().map(|n| n.0).fold(f64::INFINITY, f64::min);
        numeric
            .iter()
            .filter(|n| n.0 == axis_x)
            .map(|n| (n.2, n.1))
            .collect()
    }

    /// The rows of horizontal strokes in `color` (a dashed line is many).
    fn rows_of(&self, color: &str) -> Vec<f64> {
        let doc = roxmltree::Document::parse(&self.text).unwrap();
        let mut rows = Vec::new();
        for n in doc.descendants().filter(|n| n.has_tag_name("polyline")) {
            if n.attribute("stroke") != Some(color) {
                continue;
            }
            let ys: Vec<f64> = n
                .attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|p| p.split_once(',').and_then(|(_, y)| y.parse().ok()))
                .collect();
            if ys.len() >= 2 && ys.iter().all(|y| *y == ys[0]) && !rows.contains(&ys[0]) {
                rows.push(ys[0]);
            }
        }
        rows
    }
}

fn run_plot(
    dir: &Path,
    name: &str,
    gates: &[&str],
    leak: &str,
) -> (i32, String, Svg, serde_json::Value) {
    let svg = dir.join(format!("{name}.svg"));
    let report = dir.join(format!("{name}.json"));
    let mut args = vec![
        "run",
        "--interval",
        "100ms",
        "--plot",
        svg.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend(gates);
    args.extend([
        "--",
        bin(),
        "workload",
        "--ignore-stdin",
        "--soft-limit",
        "20000",
        "--exit-after",
        "1500ms",
        "--leak",
        leak,
    ]);
    let out = fdwatch(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("no plot ({e}): {err}"));
    let r = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (out.status.code().unwrap_or(-1), err, Svg { text }, r)
}

/// A leak of a few hundred fds under a limit of 20000: the y axis is the
/// data's (the limit is a band on the top edge, with its value), the
/// `--max-fds` gate is a line at its value, and the title's outcome is the
/// run's: FAIL when a gate failed it, PASS when not.
#[test]
fn run_plot_is_scaled_to_the_data_with_the_gate_and_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err, svg, r) = run_plot(
        dir.path(),
        "fail",
        &["--max-fds", "600", "--max-growth", "50"],
        "file:200",
    );
    assert_eq!(code, 2, "{err}");
    let peak = r["fds_peak"].as_u64().unwrap() as f64;
    assert!(peak >= 150.0, "the leak ran: {r}");
    let texts = svg.texts();
    let all: Vec<&str> = texts.iter().map(|t| t.2.as_str()).collect();
    let title = &texts[0].2;
    assert!(title.starts_with("fdwatch run — pid "), "{all:?}");
    assert!(title.ends_with("— FAIL"), "title: {title}");
    assert!(
        all.iter()
            .any(|t| t.contains("off scale") && t.contains("soft limit 20000")),
        "the limit is shown off scale: {all:?}"
    );

    // The y axis ends near the data, not at the limit.
    let ticks = svg.y_ticks();
    assert!(ticks.len() >= 3, "{ticks:?}");
    let top = ticks.iter().map(|t| t.0).fold(0.0, f64::max);
    assert!(
        top >= peak * 0.8 && top <= 3.0 * 600.0,
        "y axis up to {top} for a peak of {peak}: {ticks:?}"
    );

    // The --max-fds gate: a line in the held-gate colour at 600 on that axis.
    let (v0, y0) = ticks[0];
    let (v1, y1) = ticks[ticks.len() - 1];
    let row_of = |v: f64| y0 + (v - v0) * (y1 - y0) / (v1 - v0);
    let held = svg.rows_of("#00783C");
    assert!(
        held.iter().any(|y| (y - row_of(600.0)).abs() <= 2.0),
        "--max-fds 600 drawn at row {}: held rows {held:?}",
        row_of(600.0)
    );
    // The --max-growth gate broke: drawn in the broken-gate colour.
    assert!(
        !svg.rows_of("#C80078").is_empty(),
        "broken --max-growth gate"
    );
    assert!(
        all.iter().any(|t| t.contains("gate --max-fds 600 (held)")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|t| t.contains("gate --max-growth 50") && t.contains("(broken)")),
        "{all:?}"
    );

    // The same leak under gates it keeps: PASS in the title.
    let (code, err, svg, _) = run_plot(dir.path(), "pass", &["--max-fds", "5000"], "file:100");
    assert_eq!(code, 0, "{err}");
    let title = svg.texts()[0].2.clone();
    assert!(title.ends_with("— PASS"), "title: {title}");
}

/// Off a terminal, `assert` writes a heartbeat line while it watches (one
/// a second for a short `--for`), not only the report at the end.
#[test]
fn assert_heartbeat_off_a_terminal() {
    let w = Workload::start(&["--hold", "pipe:4"]);
    let started = Instant::now();
    let mut child = Command::new(bin())
        .args([
            "assert",
            "--pid",
            &w.pid_str(),
            "--for",
            "4s",
            "--interval",
            "200ms",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send((line, started.elapsed()));
        }
    });
    let status = child.wait().unwrap();
    let ended = started.elapsed();
    reader.join().unwrap();
    let lines: Vec<(String, Duration)> = rx.try_iter().collect();
    let all: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(status.code(), Some(0), "{all:#?}");
    let beats: Vec<&(String, Duration)> = lines
        .iter()
        .filter(|l| l.0.starts_with("fdwatch assert: "))
        .collect();
    assert!(beats.len() >= 2, "heartbeats: {all:#?}");
    assert!(
        beats[0].1 + Duration::from_millis(1500) < ended,
        "the first heartbeat came at {:?}, the end at {ended:?}: {all:#?}",
        beats[0].1
    );
    assert!(
        beats[0].0.contains(" of 4s: ")
            && beats[0].0.contains(" fds ")
            && beats[0].0.contains("verdict OK"),
        "{all:#?}"
    );
    // No escape sequences in a log.
    assert!(all.iter().all(|l| !l.contains('\x1b')), "{all:#?}");
    assert!(
        all.iter().any(|l| l.starts_with("fdwatch PASS")),
        "{all:#?}"
    );
}

/// On a terminal, `assert` keeps one status line up to date in place
/// (carriage return + erase line), then clears it for the report.
#[test]
fn assert_progress_on_a_terminal() {
    let w = Workload::start(&["--hold", "pipe:2"]);
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave: std::fs::File = pty.slave.into();
    let mut child = Command::new(bin())
        .args([
            "assert",
            "--pid",
            &w.pid_str(),
            "--for",
            "1500ms",
            "--interval",
            "200ms",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut master: std::fs::File = pty.master.into();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the child (the last holder of the slave) is gone.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let status = child.wait().unwrap();
    let out = reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{out:?}");
    let updates = out.matches("\r\x1b[2Kfdwatch assert: ").count();
    assert!(updates >= 3, "{updates} status updates: {out:?}");
    assert!(out.contains("/1.5s, "), "elapsed/total: {out:?}");
    let report = out.rfind("fdwatch PASS").expect("the report");
    assert!(
        out[..report].ends_with("\r\x1b[2K"),
        "the status line is cleared before the report: {out:?}"
    );
}
