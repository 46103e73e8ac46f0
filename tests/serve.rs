//! `fdwatch serve`: scraped by a real Prometheus, its alerting rules run by
//! promtool, and its promises kept under abuse (idle connections, thousands
//! of processes, /proc failing).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::{bin, copy_tree, Workload};

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `fdwatch serve`, its address read from its first line.
struct Serve {
    child: Guard,
    addr: String,
    _lines: Receiver<String>,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let mut child = Command::new(bin())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fdwatch serve");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("serve printed no address");
        let addr = first
            .strip_prefix("listening on http://")
            .and_then(|r| r.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        Serve {
            child: Guard(child),
            addr,
            _lines: rx,
        }
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn metrics(&self) -> String {
        let (status, body) = http_get(&self.addr, "/metrics").expect("scrape");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Scrape until `pred` holds.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + timeout;
        loop {
            let body = self.metrics();
            if pred(&body) {
                return body;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// GET with HTTP/1.0 (so neither side uses chunked encoding); (status, body).
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of `name{...pid="N"...}` in an exposition text.
fn value(text: &str, name: &str, pid: i32) -> Option<f64> {
    let needle = format!("pid=\"{pid}\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// True when `tool` is installed; else says so loudly, and fails under CI.
fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return true;
    }
    let msg = format!("SKIPPED: {tool} not installed (apt-get install -y prometheus)");
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set: this test must run)");
    }
    eprintln!("{msg}");
    false
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn real_prometheus_scrapes_the_forecast() {
    if !require_tool("prometheus") {
        return;
    }
    let w = Workload::start(&["--soft-limit", "4096", "--leak", "netlink:20"]);
    let serve = Serve::start(&[
        "--name",
        "leaky-workload",
        "--interval",
        "500ms",
        "--top",
        "3",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: fdwatch\n    static_configs:\n      - targets: ['{}']\n",
            serve.addr
        ),
    )
    .expect("write config");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let prom = Guard(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let papi = format!("127.0.0.1:{port}");
    let query = |q: &str| -> Option<serde_json::Value> {
        let (status, body) =
            http_get(&papi, &format!("/api/v1/query?query={}", urlencode(q))).ok()?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?.clone();
        (!result.is_empty()).then_some(serde_json::Value::Array(result))
    };
    let first = |r: &serde_json::Value| -> f64 {
        r[0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let pid = w.pid;
    let end = Instant::now() + Duration::from_secs(90);
    let (fds, eta, scrapes) = loop {
        let fds = query(&format!("fdwatch_open_fds{{pid=\"{pid}\"}}"));
        let eta = query(&format!("fdwatch_fd_exhaustion_seconds{{pid=\"{pid}\"}}"));
        let scrapes = query("count_over_time(up{job=\"fdwatch\"}[5m])");
        if let (Some(f), Some(e), Some(s)) = (&fds, &eta, &scrapes) {
            if first(s) >= 3.0 {
                break (f.clone(), e.clone(), first(s));
            }
        }
        if Instant::now() > end {
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            panic!("Prometheus never had the series: fds {fds:?} eta {eta:?} scrapes {scrapes:?}\nfdwatch:\n{}\nprometheus log:\n{log}", serve.metrics());
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(prom);
    let labels = &fds[0]["metric"];
    assert_eq!(labels["comm"], "leaky-workload", "{fds}");
    assert_eq!(labels["job"], "fdwatch");
    assert!(
        labels["start_time"].as_str().is_some_and(|s| !s.is_empty()),
        "{fds}"
    );
    assert!(first(&fds) > 0.0, "{fds}");
    let eta = first(&eta);
    assert!(
        eta.is_finite() && eta > 0.0 && eta < 4096.0,
        "forecast {eta}"
    );
    assert!(scrapes >= 3.0);
    eprintln!(
        "prometheus: {scrapes} scrapes, open fds {}, forecast {eta:.0} s",
        first(&fds)
    );
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    if !require_tool("promtool") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus");
    let check = Command::new("promtool")
        .args(["check", "rules", "fdwatch.rules.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new("promtool")
        .args(["test", "rules", "fdwatch.rules.test.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool");
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

#[test]
fn metrics_follow_the_exposition_format() {
    let w = Workload::start(&["--leak", "netlink:20", "--hold", "pipe:3"]);
    let serve = Serve::start(&["--pid", &w.pid_str(), "--interval", "200ms", "--top", "2"]);
    let body = serve.wait_for("a forecast", Duration::from_secs(30), |b| {
        value(b, "fdwatch_fd_exhaustion_seconds", w.pid).is_some()
            && b.contains("fdwatch_open_fds_by_kind{")
    });
    // Every sample line belongs to a family announced by HELP and TYPE.
    let mut typed = std::collections::HashSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let name = p.next().unwrap();
            assert!(matches!(p.next(), Some("gauge" | "counter")), "{line}");
            assert!(name.starts_with("fdwatch_"), "{line}");
            assert!(typed.insert(name.to_string()), "TYPE twice: {line}");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(typed.contains(name), "untyped sample {line}");
            if name.ends_with("_total") {
                assert!(body.contains(&format!("# TYPE {name} counter")));
            }
        }
    }
    assert!(body.ends_with('\n'));
    let tag = format!("pid=\"{}\",comm=\"leaky-workload\",start_time=\"", w.pid);
    assert!(body.contains(&format!("fdwatch_open_fds{{{tag}")), "{body}");
    assert!(body.contains("kind=\"netlink\""), "{body}");
    assert!(value(&body, "fdwatch_fd_soft_limit", w.pid).is_some());
    assert!(value(&body, "fdwatch_fd_hard_limit", w.pid).is_some());
    assert!(value(&body, "fdwatch_fd_usage_ratio", w.pid).is_some_and(|r| r > 0.0 && r < 1.0));
    assert!(value(&body, "fdwatch_fd_growth_per_second", w.pid).is_some_and(|g| g > 5.0));
    assert!(value(&body, "fdwatch_verdict", w.pid).is_some());
    assert!(body.contains("fdwatch_refresh_errors_total 0"));
    assert!(body.contains("fdwatch_system_files_allocated "));
    // Cardinality: the selected process plus at most --top 2 others.
    let pids: std::collections::HashSet<&str> = body
        .lines()
        .filter(|l| l.starts_with("fdwatch_open_fds{"))
        .filter_map(|l| l.split("pid=\"").nth(1)?.split('"').next())
        .collect();
    assert!(pids.len() <= 3, "{pids:?}");
    // The index page points at the metrics.
    let (status, index) = http_get(&serve.addr, "/").unwrap();
    assert_eq!(status, 200);
    assert!(index.contains("/metrics"));
    assert_eq!(http_get(&serve.addr, "/nope").unwrap().0, 404);
}

#[test]
fn idle_connections_do_not_block_a_scrape() {
    let serve = Serve::start(&["--interval", "500ms"]);
    serve.metrics();
    // Connections that never send a request, and one that sends half of one.
    let mut idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(&serve.addr).ok())
        .collect();
    let mut half = TcpStream::connect(&serve.addr).unwrap();
    half.write_all(b"GET /metr").unwrap();
    idle.push(half);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, body) = http_get(&serve.addr, "/metrics").expect("scrape while flooded");
    assert_eq!(status, 200);
    assert!(body.contains("fdwatch_processes "), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // It holds a bounded number of connections, whatever clients open
    // (its other fds are the handles on /proc/PID/fd, one per process).
    let sockets = std::fs::read_dir(format!("/proc/{}/fd", serve.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count();
    assert!(sockets <= 64 + 1, "serve holds {sockets} sockets");
    drop(idle);
}

#[test]
fn keeps_serving_the_last_snapshot_when_proc_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let proc = tmp.path().join("proc");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc"),
        &proc,
    );
    let fd = proc.join("4242/fd");
    std::fs::create_dir_all(&fd).unwrap();
    for n in 0..3 {
        std::fs::write(fd.join(n.to_string()), "").unwrap();
    }
    let serve = Serve::start(&["--proc-root", proc.to_str().unwrap(), "--interval", "200ms"]);
    let before = serve.wait_for("the fixture process", Duration::from_secs(10), |b| {
        value(b, "fdwatch_open_fds", 4242) == Some(3.0)
    });
    assert!(before.contains("fdwatch_refresh_errors_total 0"));
    std::fs::rename(&proc, tmp.path().join("gone")).unwrap();
    let after = serve.wait_for("errors counted", Duration::from_secs(10), |b| {
        !b.contains("fdwatch_refresh_errors_total 0\n")
    });
    assert_eq!(
        value(&after, "fdwatch_open_fds", 4242),
        Some(3.0),
        "{after}"
    );
}

/// 2,000 extra processes: a refresh completes, memory stays bounded.
#[test]
fn two_thousand_processes_bounded() {
    let mut sleepers: Vec<Guard> = Vec::new();
    for _ in 0..2000 {
        match Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => sleepers.push(Guard(c)),
            Err(e) => panic!("spawning sleepers: {e} after {}", sleepers.len()),
        }
    }
    let serve = Serve::start(&["--interval", "500ms", "--top", "20"]);
    let body = serve.wait_for("2,000 processes", Duration::from_secs(30), |b| {
        b.lines()
            .find(|l| l.starts_with("fdwatch_processes "))
            .and_then(|l| l.split(' ').nth(1)?.parse::<f64>().ok())
            .is_some_and(|n| n >= 2000.0)
    });
    // A few more refreshes, then look at its memory and refresh time.
    std::thread::sleep(Duration::from_secs(3));
    let body2 = serve.metrics();
    let refresh: f64 = body2
        .lines()
        .find(|l| l.starts_with("fdwatch_refresh_duration_seconds "))
        .and_then(|l| l.split(' ').nth(1)?.parse().ok())
        .expect("refresh duration");
    assert!(refresh < 2.0, "a refresh took {refresh} s");
    let rss = rss_kib(serve.pid());
    eprintln!(
        "serve with 2,000 extra processes: refresh {:.1} ms, RSS {} KiB",
        refresh * 1000.0,
        rss
    );
    assert!(rss < 64 * 1024, "RSS {rss} KiB");
    // Cardinality stays at --top whatever the number of processes.
    let series = body
        .lines()
        .filter(|l| l.starts_with("fdwatch_open_fds{"))
        .count();
    assert!(series <= 20, "{series} series");

    // top over the same host: one JSON document per refresh, all counted.
    let out = Command::new(bin())
        .args([
            "top",
            "--json",
            "--count",
            "2",
            "--interval",
            "200ms",
            "--limit",
            "5",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("top");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON document"))
        .collect();
    assert_eq!(docs.len(), 2);
    assert!(docs[1]["processes"].as_u64().unwrap() >= 2000);
    assert_eq!(docs[1]["rows"].as_array().unwrap().len(), 5);
}
