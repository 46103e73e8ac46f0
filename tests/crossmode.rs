//! One workload, every mode, one verdict (issue 15, "Evidence").
//!
//! Each test starts a real workload under `fdwatch run` (so `run` samples it
//! from its first instant) and, on the same child and at the same time,
//! watches it with `watch --json --record`, `watch --plain`, a `check` with a
//! state file run every 1.5 s, `top --json`, `serve` (scraped every
//! 500 ms) and `assert --pid`; when it has exited, `analyze` replays the
//! recording. `run`'s and `assert`'s final verdicts must be ones the
//! reference gave over its last samples. Every mode
//! must give the level the reference (`watch --json`, the densest) gave at
//! the same moment, within one sample: a mode's level at time `t` must be
//! one the reference showed within the coarser of the two intervals (plus
//! scheduling slack) of `t`.
//!
//! Verdicts that say "collecting" are left out of the comparison: a mode
//! that has taken fewer than five samples has no trend yet, which is an
//! honest difference of sampling density, not of judgment. Each mode must
//! still have enough judged points for the comparison to mean something.
//!
//! `top` and `serve` always use the count-only census (one stat() per
//! process); `watch`, `check` and `run` use the backend under test (`proc`,
//! or `bpf`, which needs root and kernel BTF: said loudly when unavailable,
//! a failure under CI).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

/// The reference pace, and the pace of every other mode.
const WATCH: f64 = 0.25;
const CHECK_EVERY: f64 = 1.5;
const TOP: f64 = 0.5;
const SERVE: f64 = 0.5;
/// Scheduling slack on a loaded 2-core machine.
const SLACK: f64 = 0.5;

/// A level a mode showed at a time, with the reason that set it.
#[derive(Debug, Clone)]
struct Seen {
    t: f64,
    level: String,
    reason: String,
    /// The forecast's seconds to the limit, when the mode shows one.
    eta: Option<f64>,
}

struct Mode {
    name: &'static str,
    /// Seconds between this mode's verdicts.
    interval: f64,
    seen: Vec<Seen>,
}

/// A child killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn lines_of(child: &mut Child) -> Receiver<String> {
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z ") && !s.contains(") X "))
        .unwrap_or(false)
}

fn first_reason(verdict: &serde_json::Value) -> String {
    verdict["reasons"][0].as_str().unwrap_or("").to_string()
}

/// `watch --json` / `--plain` until the target exits.
fn spawn_watch(pid: i32, backend: &str, output: &str, record: Option<&std::path::Path>) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args(["--pid", &pid.to_string(), "--interval", "250ms"])
        .args(["--backend", backend, output])
        // A bounded watch, whatever happens to the target.
        .args(["--duration", "60s"]);
    if let Some(r) = record {
        cmd.arg("--record").arg(r);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch")
}

/// `check --state` every [`CHECK_EVERY`] seconds while the target lives.
fn check_loop(pid: i32, backend: String, state: std::path::PathBuf) -> JoinHandle<Vec<Seen>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let start = Instant::now();
        let mut round = 0u32;
        while alive(pid) && start.elapsed() < Duration::from_secs(60) {
            let out = Command::new(bin())
                .args(["check", "--pid", &pid.to_string(), "--state"])
                .arg(&state)
                .args(["--samples", "2", "--interval", "250ms", "--format", "json"])
                .args(["--backend", &backend])
                .stdin(Stdio::null())
                .output()
                .expect("run check");
            if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                let p = &doc["processes"][0];
                if let (Some(t), Some(level)) =
                    (p["sample"]["unix_time"].as_f64(), p["level"].as_str())
                {
                    seen.push(Seen {
                        t,
                        level: level.to_string(),
                        reason: first_reason(&p["verdict"]),
                        eta: p["verdict"]["forecast"]["eta"].as_f64(),
                    });
                }
            }
            round += 1;
            let next = start + Duration::from_secs_f64(CHECK_EVERY * round as f64);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        seen
    })
}

/// GET with HTTP/1.0; the body.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The value of `name{...pid="N"...}` in an exposition text.
fn metric(text: &str, name: &str, pid: i32) -> Option<f64> {
    let needle = format!("pid=\"{pid}\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `serve --pid N`, scraped every [`SERVE`] seconds while the target lives.
/// A scrape shows the last refresh: its time is the scrape's, less up to
/// one refresh interval (the comparison allows one interval).
fn serve_loop(pid: i32) -> JoinHandle<Vec<Seen>> {
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pid",
            &pid.to_string(),
        ])
        .args(["--top", "0", "--interval", "500ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve");
    let rx = lines_of(&mut child);
    let guard = Guard(child);
    std::thread::spawn(move || {
        let _guard = guard;
        let Ok(first) = rx.recv_timeout(Duration::from_secs(20)) else {
            return Vec::new();
        };
        let Some(addr) = first
            .strip_prefix("listening on http://")
            .and_then(|r| r.strip_suffix("/metrics"))
            .map(str::to_string)
        else {
            return Vec::new();
        };
        let names = ["OK", "WARNING", "CRITICAL", "UNKNOWN"];
        let mut first_seen: Option<f64> = None;
        let mut seen = Vec::new();
        let start = Instant::now();
        while alive(pid) && start.elapsed() < Duration::from_secs(60) {
            if let Some(body) = http_get(&addr, "/metrics") {
                if let Some(v) = metric(&body, "fdwatch_verdict", pid) {
                    let t = now();
                    let confirmed = metric(&body, "fdwatch_fd_exhaustion_confirmed", pid);
                    // The exposition has no reason text: a trend needs five
                    // refreshes, so the first five seconds' worth are
                    // "collecting" (a flat count exports no growth at all).
                    let first = *first_seen.get_or_insert(t);
                    let growth = metric(&body, "fdwatch_fd_growth_per_second", pid);
                    let reason = if t - first < 5.0 * SERVE {
                        "collecting (first refreshes)".to_string()
                    } else {
                        format!("growth {growth:?}/s, confirmed={confirmed:?}")
                    };
                    seen.push(Seen {
                        // Up to one refresh old: centre it.
                        t: t - SERVE / 2.0,
                        level: names.get(v as usize).unwrap_or(&"?").to_string(),
                        reason,
                        eta: metric(&body, "fdwatch_fd_exhaustion_seconds", pid),
                    });
                }
            }
            std::thread::sleep(Duration::from_secs_f64(SERVE));
        }
        seen
    })
}

/// `top --json --pid N` while the target lives.
fn top_loop(pid: i32) -> JoinHandle<Vec<Seen>> {
    let mut child = Command::new(bin())
        .args([
            "top",
            "--json",
            "--pid",
            &pid.to_string(),
            "--interval",
            "500ms",
        ])
        .args(["--count", "120"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn top");
    let rx = lines_of(&mut child);
    let guard = Guard(child);
    std::thread::spawn(move || {
        let _guard = guard;
        let mut seen = Vec::new();
        let mut gone_for = 0;
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let row = doc["rows"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["pid"] == pid));
            match row {
                Some(r) => seen.push(Seen {
                    t: doc["unix_time"].as_f64().unwrap_or(0.0),
                    level: r["level"].as_str().unwrap_or("?").to_string(),
                    reason: r["reason"].as_str().unwrap_or("").to_string(),
                    eta: r["eta_seconds"].as_f64(),
                }),
                None if !seen.is_empty() => {
                    gone_for += 1;
                    if gone_for >= 2 {
                        break;
                    }
                }
                None => {}
            }
        }
        seen
    })
}

fn watch_json(child: Child) -> Vec<serde_json::Value> {
    let out = child.wait_with_output().expect("watch --json");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Everything every mode saw of one workload.
struct Run {
    reference: Vec<serde_json::Value>,
    plain: Vec<String>,
    modes: Vec<Mode>,
    /// The recording replayed: one step per recorded sample.
    analyze: Vec<Seen>,
    run_report: serde_json::Value,
    /// `assert --pid` on the same child, to its exit.
    assert_report: serde_json::Value,
}

/// Start `fdwatch run --backend B -- fdwatch workload ARGS` and every other
/// mode on the workload's pid; collect what each saw until it exits.
fn observe(backend: &str, workload: &[&str], secs: u32) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("run.json");
    let rec = dir.path().join("rec.jsonl");
    let state = dir.path().join("check.state");
    let exit_after = format!("{secs}s");
    let mut run = Command::new(bin())
        .args([
            "run",
            "--backend",
            backend,
            "--interval",
            "250ms",
            "--report",
        ])
        .arg(&report)
        .args(["--", bin(), "workload", "--ignore-stdin", "--exit-after"])
        .arg(&exit_after)
        .args(workload)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn fdwatch run");
    let run_lines = lines_of(&mut run);
    let run = Guard(run);
    let ready = run_lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the workload said nothing");
    let pid: i32 = ready
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("not a ready line: {ready:?}"));

    let assert_path = dir.path().join("assert.json");
    let assert = Guard(
        Command::new(bin())
            .args(["assert", "--pid", &pid.to_string(), "--backend", backend])
            .args(["--interval", "250ms", "--fail-on", "never", "--for"])
            .arg(format!("{}s", secs + 30))
            .arg("--report")
            .arg(&assert_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fdwatch assert"),
    );
    let json = spawn_watch(pid, backend, "--json", Some(&rec));
    let plain = spawn_watch(pid, backend, "--plain", None);
    let check = check_loop(pid, backend.to_string(), state);
    let top = top_loop(pid);
    let serve = serve_loop(pid);

    let reference = watch_json(json);
    let plain_out = plain.wait_with_output().expect("watch --plain");
    let plain: Vec<String> = String::from_utf8_lossy(&plain_out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let check = check.join().expect("check loop");
    let top = top.join().expect("top loop");
    let serve = serve.join().expect("serve loop");
    // `run` ends with its command.
    let mut run = run;
    let deadline = Instant::now() + Duration::from_secs(30);
    while run.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let run_report: serde_json::Value = std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("run wrote no report at {}", report.display()));
    drop(run);
    // `assert` ends when its target goes away (a failed step: the process
    // left during the check), with the verdict it had.
    let mut assert = assert;
    let deadline = Instant::now() + Duration::from_secs(30);
    while assert.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let assert_report: serde_json::Value = std::fs::read(&assert_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("assert wrote no report at {}", assert_path.display()));
    drop(assert);

    // analyze of the recording: the same session code, replayed.
    let out = fdwatch(&["analyze", "--json", rec.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("analyze: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let analyze: Vec<Seen> = doc["series"][0]["steps"]
        .as_array()
        .expect("analyze steps")
        .iter()
        .map(|s| Seen {
            t: s["unix_time"].as_f64().unwrap_or(0.0),
            level: s["level"].as_str().unwrap_or("?").to_string(),
            reason: String::new(),
            eta: None,
        })
        .collect();

    Run {
        reference,
        plain,
        modes: vec![
            Mode {
                name: "check --state",
                interval: CHECK_EVERY,
                seen: check,
            },
            Mode {
                name: "top",
                interval: TOP,
                seen: top,
            },
            Mode {
                name: "serve",
                interval: SERVE,
                seen: serve,
            },
        ],
        analyze,
        run_report,
        assert_report,
    }
}

fn reference_seen(reference: &[serde_json::Value]) -> Vec<Seen> {
    reference
        .iter()
        .map(|l| Seen {
            t: l["unix_time"].as_f64().unwrap_or(0.0),
            level: l["verdict"]["level"].as_str().unwrap_or("?").to_string(),
            reason: first_reason(&l["verdict"]),
            eta: l["verdict"]["forecast"]["eta"].as_f64(),
        })
        .collect()
}

fn plain_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split(' ').next()
}

/// Assert every mode agrees with the reference within one sample; returns
/// the reference's levels (for the workload's own expectations).
fn assert_agree(what: &str, r: &Run) -> Vec<Seen> {
    let reference = reference_seen(&r.reference);
    assert!(
        reference.len() >= 20,
        "{what}: the reference watch took only {} samples",
        reference.len()
    );
    let mut report = vec![format!(
        "{what}: reference {:?}",
        reference.iter().map(|s| &s.level[..1]).collect::<String>()
    )];
    // Before the reference has a trend there is nothing to compare with.
    let judged_from = reference
        .iter()
        .find(|x| !x.reason.starts_with("collecting"))
        .map(|x| x.t)
        .unwrap_or(f64::INFINITY);
    for m in &r.modes {
        let tol = m.interval.max(WATCH) + SLACK;
        let judged: Vec<&Seen> = m
            .seen
            .iter()
            .filter(|s| !s.reason.starts_with("collecting") && s.t >= judged_from)
            .collect();
        let mut compared = 0;
        for s in &judged {
            let window: Vec<&Seen> = reference
                .iter()
                .filter(|x| (x.t - s.t).abs() <= tol && !x.reason.starts_with("collecting"))
                .collect();
            // Before the reference's first judged sample or after its last.
            if window.is_empty() {
                continue;
            }
            compared += 1;
            assert!(
                window.iter().any(|x| x.level == s.level),
                "{what}: {} says {} at {:.2}s ({}), the reference says {:?} within {tol:.2}s",
                m.name,
                s.level,
                s.t - reference[0].t,
                s.reason,
                window
                    .iter()
                    .map(|x| format!("{:.2}s {} ({})", x.t - reference[0].t, x.level, x.reason))
                    .collect::<Vec<_>>()
            );
        }
        let need = ((reference.len() as f64 * WATCH / m.interval) / 3.0).max(3.0) as usize;
        assert!(
            compared >= need,
            "{what}: {} gave only {compared} judged verdicts to compare (need {need}): {:?}",
            m.name,
            m.seen
        );
        report.push(format!(
            "  {}: {compared} verdicts agree {:?}",
            m.name,
            m.seen.iter().map(|s| &s.level[..1]).collect::<String>()
        ));
    }
    // analyze replays the reference's own recording through the same
    // session code: the same level at every sample, exactly.
    let replayed: Vec<&str> = r.analyze.iter().map(|s| s.level.as_str()).collect();
    let live: Vec<&str> = reference.iter().map(|s| s.level.as_str()).collect();
    assert_eq!(replayed, live, "{what}: analyze of the recording");
    report.push(format!(
        "  analyze: {} samples, the same levels",
        replayed.len()
    ));
    // The plain lines: a second watch at the same pace, compared sample
    // by sample (its timestamps have one-second resolution).
    let plain: Vec<(&str, Option<&str>)> = r
        .plain
        .iter()
        .filter_map(|l| Some((plain_field(l, "level")?, plain_field(l, "pattern"))))
        .collect();
    assert!(
        plain.len() + 3 >= reference.len() && reference.len() + 3 >= plain.len(),
        "{what}: {} plain lines vs {} JSON lines",
        plain.len(),
        reference.len()
    );
    for (i, (level, _)) in plain.iter().enumerate() {
        let lo = i.saturating_sub(1);
        let hi = (i + 2).min(reference.len());
        if lo >= hi
            || reference[lo..hi]
                .iter()
                .any(|x| x.reason.starts_with("collecting"))
        {
            continue;
        }
        assert!(
            reference[lo..hi].iter().any(|x| x.level == *level),
            "{what}: plain line {i} says {level}, the JSON watch says {:?}",
            reference[lo..hi]
                .iter()
                .map(|x| &x.level)
                .collect::<Vec<_>>()
        );
    }
    // `run` judged the same child to its exit: its final verdict is one the
    // reference gave over its last samples.
    let run_level = r.run_report["verdict"]["level"].as_str().unwrap_or("?");
    let tail: Vec<&str> = reference
        .iter()
        .rev()
        .take(3)
        .map(|x| x.level.as_str())
        .collect();
    assert!(
        tail.contains(&run_level),
        "{what}: run's final verdict {run_level} ({}), the reference's last {tail:?}",
        first_reason(&r.run_report["verdict"])
    );
    report.push(format!("  run: final {run_level}"));
    // `assert` watched the same child by pid: the same final verdict.
    let assert_level = r.assert_report["verdict"]["level"].as_str().unwrap_or("?");
    assert!(
        tail.contains(&assert_level),
        "{what}: assert's final verdict {assert_level} ({}), the reference's last {tail:?}",
        first_reason(&r.assert_report["verdict"])
    );
    report.push(format!("  assert: final {assert_level}"));
    report.push(format!(
        "  plain: {}",
        plain.iter().map(|p| &p.0[..1]).collect::<String>()
    ));
    say_skipped(&report.join("\n"));
    reference
}

fn backend_ok(backend: &str, what: &str) -> bool {
    backend == "proc" || require_bpf(what)
}

fn leak(backend: &str) {
    let what = format!("crossmode leak ({backend})");
    if !backend_ok(backend, &what) {
        return;
    }
    // 20 netlink sockets/s from ~10 fds under 300: EMFILE ~14 s after the
    // start, so the run ends (at 10 s) with a confirmed forecast.
    let r = observe(
        backend,
        &["--soft-limit", "300", "--leak", "netlink:20"],
        10,
    );
    let reference = assert_agree(&what, &r);
    let levels: Vec<&str> = reference.iter().map(|s| s.level.as_str()).collect();
    assert_eq!(levels.last(), Some(&"CRITICAL"), "{what}: {levels:?}");
    // Once CRITICAL, it stays CRITICAL: no flapping while the leak goes on.
    let first = levels.iter().position(|l| *l == "CRITICAL").unwrap();
    assert!(
        levels[first..].iter().all(|l| *l == "CRITICAL"),
        "{what}: flapping {levels:?}"
    );
    // Never OK beside a forecast inside --crit-eta (10 m), in any mode: a
    // held-back forecast that near is a WARNING that says so.
    for (name, seen) in std::iter::once(("watch --json", &reference))
        .chain(r.modes.iter().map(|m| (m.name, &m.seen)))
    {
        for s in seen.iter() {
            assert!(
                !(s.level == "OK" && s.eta.is_some_and(|e| e <= 600.0)),
                "{what}: {name} says OK beside EMFILE in {:.0}s ({})",
                s.eta.unwrap_or(0.0),
                s.reason
            );
        }
    }
    // A leak is never called churn: while the trend is still collecting,
    // the exact socket() counts alone cannot tell a socket kept from one
    // closed again.
    for l in &r.plain {
        assert!(
            !plain_field(l, "pattern").is_some_and(|p| p.contains("netlink_churn")),
            "{what}: a leak named churn: {l}"
        );
    }
    // A leak from the process's start alarms with at least half of its
    // time to EMFILE left (t_emfile ≈ 14 s).
    let t0 = reference[0].t;
    let at = reference[first].t - t0;
    let emfile = (300.0 - r.reference[0]["fds"].as_f64().unwrap_or(0.0)) / 20.0;
    assert!(
        at <= emfile / 2.0,
        "{what}: CRITICAL at {at:.1}s, EMFILE at ~{emfile:.1}s"
    );
}

fn sawtooth(backend: &str) {
    let what = format!("crossmode sawtooth ({backend})");
    if !backend_ok(backend, &what) {
        return;
    }
    let r = observe(
        backend,
        &["--soft-limit", "1024", "--sawtooth", "pipe:30:2s"],
        10,
    );
    let reference = assert_agree(&what, &r);
    let fds: Vec<i64> = r
        .reference
        .iter()
        .map(|l| l["fds"].as_i64().unwrap_or(0))
        .collect();
    assert!(
        reference.iter().all(|s| s.level != "CRITICAL"),
        "{what}: a page on a pool"
    );
    let first_drop = fds
        .windows(2)
        .position(|w| w[1] <= w[0] - 10)
        .expect("the pool drops");
    for m in &r.modes {
        assert!(
            m.seen.iter().all(|s| s.level != "CRITICAL"),
            "{what}: {} pages on a pool: {:?}",
            m.name,
            m.seen
        );
    }
    assert!(
        reference[first_drop + 1..].iter().all(|s| s.level == "OK"),
        "{what}: an alarm after the first drop"
    );
}

fn churn(backend: &str) {
    let what = format!("crossmode churn ({backend})");
    if !backend_ok(backend, &what) {
        return;
    }
    let r = observe(
        backend,
        &["--hold", "netlink:2", "--churn", "netlink:400"],
        8,
    );
    let reference = assert_agree(&what, &r);
    assert!(
        reference.iter().all(|s| s.level == "OK"),
        "{what}: churn without a leak alarmed"
    );
    for m in &r.modes {
        assert!(
            m.seen.iter().all(|s| s.level == "OK"),
            "{what}: {} alarmed: {:?}",
            m.name,
            m.seen
        );
    }
    // The logs say what the JSON says: the churn is named in the plain
    // lines (as root the exact syscall counts name it on every line).
    let named_json = r
        .reference
        .iter()
        .filter(|l| {
            l["verdict"]["patterns"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["id"] == "netlink_churn"))
        })
        .count();
    let named_plain = r
        .plain
        .iter()
        .filter(|l| plain_field(l, "pattern").is_some_and(|p| p.contains("netlink_churn")))
        .count();
    assert!(named_json >= 3, "{what}: the JSON never names the churn");
    assert!(
        named_plain + 3 >= named_json,
        "{what}: the churn is named on {named_json} JSON lines, {named_plain} plain lines"
    );
}

#[test]
fn leak_proc() {
    leak("proc");
}

#[test]
fn leak_bpf() {
    leak("bpf");
}

#[test]
fn sawtooth_proc() {
    sawtooth("proc");
}

#[test]
fn sawtooth_bpf() {
    sawtooth("bpf");
}

#[test]
fn churn_proc() {
    churn("proc");
}

#[test]
fn churn_bpf() {
    churn("bpf");
}

/// Issue 15 (BPF `run`: a leak read "not growing"): a process that exits
/// loses its whole fd table before it becomes a zombie, and a census in that
/// window read 0 fds: the last samples of every run were a drop to 0, which
/// turned the trend into a lower envelope. Sampled every 5 ms through its
/// exit, a process holding 5,000 sockets never shows fewer.
fn exit_is_not_a_drop(backend: &str) {
    let what = format!("exit is not a drop ({backend})");
    if !backend_ok(backend, &what) {
        return;
    }
    let w = Workload::start(&[
        "--soft-limit",
        "6000",
        "--hold",
        "netlink:5000",
        "--exit-after",
        "1500ms",
        "--ignore-stdin",
    ]);
    let out = fdwatch(&[
        "--pid",
        &w.pid_str(),
        "--json",
        "--interval",
        "5ms",
        "--duration",
        "20s",
        "--syscalls",
        "off",
        "--backend",
        backend,
    ]);
    let fds: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l["fds"].as_i64())
        .collect();
    assert!(fds.len() >= 5, "{what}: only {} samples", fds.len());
    let low: Vec<&i64> = fds.iter().filter(|n| **n < 5000).collect();
    assert!(
        low.is_empty(),
        "{what}: {} of {} samples read the exit as a drop (last: {:?})",
        low.len(),
        fds.len(),
        &fds[fds.len().saturating_sub(5)..]
    );
}

#[test]
fn exit_is_not_a_drop_proc() {
    exit_is_not_a_drop("proc");
}

#[test]
fn exit_is_not_a_drop_bpf() {
    exit_is_not_a_drop("bpf");
}

/// Issue 15 (level flapping): `fdwatch demo`'s plain lines went CRITICAL
/// (EMFILE in ~13s) -> WARNING "82% of the soft limit in use" -> CRITICAL.
/// On a steady leak up to EMFILE the level never falls, and the reason
/// printed is the one that set it (a usage reason never stands beside a
/// CRITICAL it does not support). A guard, not a proven regression test:
/// on this machine the flap did not reproduce with the binary from before
/// the fix (004373d^) either, at these settings or the demo's defaults.
#[test]
fn demo_plain_lines_never_flap() {
    let out = Command::new(bin())
        .args(["demo", "--plain", "--rate", "40", "--soft-limit", "400"])
        .args(["--interval", "200ms", "--linger", "1s"])
        .stdin(Stdio::null())
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    let rank = |l: &str| ["OK", "WARNING", "CRITICAL"].iter().position(|x| *x == l);
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let level = plain_field(l, "level")?;
            let reason = l.split_once(" reason=").map(|r| r.1).unwrap_or("");
            Some((level, reason))
        })
        .collect();
    assert!(lines.len() >= 20, "{} plain lines:\n{text}", lines.len());
    let levels: Vec<&str> = lines.iter().map(|l| l.0).collect();
    assert_eq!(levels.last(), Some(&"CRITICAL"), "{levels:?}");
    for w in levels.windows(2) {
        assert!(
            rank(w[1]) >= rank(w[0]),
            "the level fell {} -> {}: {levels:?}",
            w[0],
            w[1]
        );
    }
    for (level, reason) in &lines {
        if *level == "CRITICAL" {
            assert!(
                !reason.contains("(threshold 80%)"),
                "CRITICAL beside a WARNING's reason: {reason}"
            );
        }
    }
}
