//! `fdwatch analyze` on hostile and huge input: every read bounded, every
//! time and count validated where it enters, one line naming the file and the
//! line for a bad input, and the healthy inputs still reported.
//!
//! `FDWATCH_TEST_BIN` points these tests at another build of fdwatch (to see
//! them fail on a build without the fixes).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    std::env::var_os("FDWATCH_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fdwatch")))
}

struct Run {
    code: i32,
    out: String,
    err: String,
    /// Peak resident memory of the child, KiB.
    max_rss_kib: i64,
    took: Duration,
}

/// Run `fdwatch analyze ARGS`, killed after `limit`; its peak RSS from wait4.
// The child is reaped by wait4 (not Child::wait), which also gives its rusage.
#[allow(clippy::zombie_processes)]
fn analyze_limited(args: &[&str], limit: Duration) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let start = Instant::now();
    let child = Command::new(bin())
        .arg("analyze")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run fdwatch analyze");
    let pid = child.id() as libc::pid_t;
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            // SAFETY: kill with signal 0 only asks whether pid is still ours and alive.
            if unsafe { libc::kill(pid, 0) } != 0 {
                return;
            }
        }
        // SAFETY: pid is our child, not yet reaped (wait4 below reaps it).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and usage are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    let took = start.elapsed();
    killer.join().unwrap();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    Run {
        code,
        out: std::fs::read_to_string(&out_path).unwrap(),
        err: std::fs::read_to_string(&err_path).unwrap(),
        max_rss_kib: usage.ru_maxrss,
        took,
    }
}

fn analyze(args: &[&str]) -> Run {
    analyze_limited(args, Duration::from_secs(60))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const HEALTHY_CSV: &str =
    "unix_time,fds,soft_limit\n1795680000,10,100\n1795680010,11,100\n1795680020,12,100\n";

fn jsonl_line(unix: &str, mono: &str, fds: &str) -> String {
    format!(
        r#"{{"schema":1,"backend":"count","pid":7,"comm":"x","start_time":5,"unix_time":{unix},"mono_time":{mono},"fds":{fds},"limits":{{"soft":1000,"hard":4096}},"system":{{"allocated":1,"unused":0,"max":9999999,"nr_open":1048576}}}}"#
    )
}

fn prometheus(t: &str) -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"__name__":"process_open_fds","job":"j"}},"values":[[1795680000,"5"],[{t},"6"]]}}]}}}}"#
    )
}

/// The bad input gets one stderr line naming it, the healthy one its report, exit 3.
fn assert_one_line_and_the_rest_reported(r: &Run, bad: &str, says: &str) {
    assert_eq!(r.code, 3, "exit code; stderr: {}", r.err);
    let lines: Vec<&str> = r.err.lines().collect();
    assert_eq!(lines.len(), 1, "one stderr line: {}", r.err);
    assert!(lines[0].starts_with("fdwatch: "), "{}", r.err);
    assert!(lines[0].contains(bad), "names the file: {}", r.err);
    assert!(lines[0].contains(says), "says {says:?}: {}", r.err);
    assert!(
        r.out.contains("healthy (CSV): OK"),
        "the healthy input is still reported: {}",
        r.out
    );
}

#[test]
fn times_no_clock_shows_are_one_line_naming_file_and_line_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = write(dir.path(), "healthy.csv", HEALTHY_CSV);
    let mut cases = Vec::new();
    for t in ["300000000000", "1e19", "1e20"] {
        cases.push((format!("unix_time,fds\n{t},10\n"), "csv", "line 2"));
        cases.push((
            format!(
                "{}\n{}\n",
                jsonl_line("1795680000", "1", "1"),
                jsonl_line(t, "2", "1")
            ),
            "jsonl",
            "line 2",
        ));
        cases.push((prometheus(t), "json", "point 2"));
    }
    for (i, (text, ext, at)) in cases.iter().enumerate() {
        let bad = write(dir.path(), &format!("bad{i}.{ext}"), text);
        for plot in [false, true] {
            let svg = dir.path().join("p.svg").display().to_string();
            let mut args = vec![healthy.as_str(), bad.as_str()];
            if plot {
                args.extend(["--plot", svg.as_str()]);
            }
            let r = analyze(&args);
            assert_one_line_and_the_rest_reported(&r, &bad, at);
            assert!(r.err.contains("outside 1970..2200"), "{}", r.err);
        }
    }
}

#[test]
fn counts_no_process_holds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = write(dir.path(), "healthy.csv", HEALTHY_CSV);
    // (A count that is not an integer, 1e300, is not a sample at all: a
    // corrupt line, skipped and said.)
    for fds in ["18446744073709551615", "4294967296"] {
        let bad = write(
            dir.path(),
            "big.jsonl",
            &format!(
                "{}\n{}\n",
                jsonl_line("1795680000", "1", "1"),
                jsonl_line("1795680001", "2", fds)
            ),
        );
        let r = analyze(&[&healthy, &bad]);
        assert_one_line_and_the_rest_reported(&r, &bad, "line 2");
    }
}

#[test]
fn an_unknown_schema_is_one_line_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = write(dir.path(), "healthy.csv", HEALTHY_CSV);
    let good = jsonl_line("1795680000", "1", "1");
    let future = jsonl_line("1795680001", "2", "1").replace("\"schema\":1", "\"schema\":99");
    let bad = write(dir.path(), "future.jsonl", &format!("{good}\n{future}\n"));
    let r = analyze(&[&healthy, &bad]);
    assert_one_line_and_the_rest_reported(&r, &bad, "line 2: sample schema 99");
}

#[test]
fn an_impossible_mono_time_is_refused_not_turned_into_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = write(dir.path(), "healthy.csv", HEALTHY_CSV);
    // A flat process at 10 of 1000 fds: OK. One mono_time of -1e300 made
    // the trend a cliff and the verdict CRITICAL.
    let mut text = String::new();
    for i in 0..30 {
        let mono = if i == 20 {
            "-1e300".to_string()
        } else {
            i.to_string()
        };
        text.push_str(&jsonl_line(&(1_795_680_000 + i).to_string(), &mono, "10"));
        text.push('\n');
    }
    let bad = write(dir.path(), "mono.jsonl", &text);
    let r = analyze(&[&healthy, &bad]);
    assert_one_line_and_the_rest_reported(&r, &bad, "line 21: mono_time");
}

#[test]
fn a_prometheus_error_answer_keeps_prometheus_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = write(dir.path(), "healthy.csv", HEALTHY_CSV);
    let bad = write(
        dir.path(),
        "err.json",
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error"}"#,
    );
    let r = analyze(&[&healthy, &bad]);
    assert_one_line_and_the_rest_reported(&r, &bad, "bad_data");
    assert!(r.err.contains("parse error"), "{}", r.err);
}

#[test]
fn dev_zero_ends_with_one_line_in_bounded_memory() {
    for format in ["auto", "csv", "jsonl", "prometheus", "state"] {
        let r = analyze_limited(&["/dev/zero", "--format", format], Duration::from_secs(20));
        assert_eq!(r.code, 3, "--format {format}: {}", r.err);
        assert_eq!(r.err.lines().count(), 1, "--format {format}: {}", r.err);
        assert!(r.err.contains("/dev/zero"), "{}", r.err);
        assert!(
            r.max_rss_kib < 50 * 1024,
            "--format {format}: peak RSS {} KiB",
            r.max_rss_kib
        );
        assert!(
            r.took < Duration::from_secs(10),
            "--format {format}: {:?}",
            r.took
        );
    }
}

#[test]
fn a_long_input_streams_in_bounded_memory() {
    // 300,000 rows (7 MB): memory must not grow with the rows.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(f, "unix_time,fds,soft_limit").unwrap();
    for i in 0..300_000u64 {
        writeln!(
            f,
            "{},{},100000",
            1_700_000_000 + i * 10,
            100 + i / 50 + i % 3
        )
        .unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let p = path.display().to_string();
    let svg = dir.path().join("long.svg");
    let r = analyze(&[&p, "--plot", &svg.display().to_string()]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("300000 samples"), "{}", r.out);
    assert!(r.max_rss_kib < 50 * 1024, "peak RSS {} KiB", r.max_rss_kib);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.len() < 2 << 20, "a thinned plot: {} bytes", svg.len());
}

#[test]
fn an_overlong_line_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = write(dir.path(), "healthy.csv", HEALTHY_CSV);
    let long = format!("unix_time,fds\n1795680000,1\n{}\n", "9".repeat(3 << 20));
    let bad = write(dir.path(), "long.csv", &long);
    let r = analyze(&[&healthy, &bad]);
    assert_one_line_and_the_rest_reported(&r, &bad, "line 3: longer than 1 MiB");
}

#[test]
fn samples_too_late_to_sort_are_dropped_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("unix_time,fds\n");
    for i in 0..40 {
        text.push_str(&format!("{},{}\n", 1_795_680_000 + i * 10, 10 + i));
    }
    // Twenty samples late: older than samples already analysed.
    text.push_str("1795680005,99\n");
    let f = write(dir.path(), "late.csv", &text);
    let r = analyze(&[&f, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    let s = &v["series"][0];
    assert_eq!(s["samples"], 40, "{}", r.out);
    assert_eq!(s["late_dropped"], 1);
    assert!(s["notes"]
        .to_string()
        .contains("1 sample(s) more than 8 samples late"));
}
