//! Untrusted names reach every output escaped: a real child process whose
//! comm (prctl PR_SET_NAME) and argv[0] (execv) hold terminal escape
//! sequences, newlines, `|`, `<&"`, characters XML 1.0 forbids and invalid
//! UTF-8, watched through every output fdwatch has.

mod common;

use common::{bin, fdwatch, Workload};
use std::process::{Command, Stdio};

/// A terminal-title OSC and a colour: 15 bytes, the most comm holds.
const OSC_RED: &[u8] = b"\x1b]0;PWN\x07\x1b[31mRE";
/// A newline, the perfdata separator, XML's specials, a clear-screen and
/// two characters XML 1.0 forbids.
const SPLITTER: &[u8] = b"a|b\nc<&\"\x1b[2J\x01\x0c";
/// Not UTF-8 at all.
const NOT_UTF8: &[u8] = b"\xff\xfe<bad>\x1b";

/// The child: re-executes itself with a hostile argv[0] (what `exec -a`
/// does), names itself with prctl, holds five fds on one file whose name
/// carries the hostile bytes (a repeated path), says ready, and waits for
/// its stdin to close.
fn child_script() -> String {
    // The script passes itself on through execv (python -c has no file).
    let body = r#"
import ctypes, os, sys
name = bytes.fromhex(sys.argv[1])
here = sys.argv[2]
if sys.argv[-1] != "named":
    os.execv(sys.executable, [name + b"\x1b[7m|argv0\n", "-c", SCRIPT, sys.argv[1], here, "named"])
ctypes.CDLL(None).prctl(15, name, 0, 0, 0)
path = os.path.join(here.encode(), b"f-" + name.replace(b"/", b"_"))
fds = [os.open(path, os.O_RDONLY | os.O_CREAT, 0o600) for _ in range(5)]
print("ready", os.getpid(), flush=True)
sys.stdin.read()
"#;
    format!("SCRIPT = {body:?}\n{body}")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Hostile {
    w: Workload,
    _dir: tempfile::TempDir,
}

fn hostile(name: &[u8]) -> Hostile {
    let dir = tempfile::tempdir().unwrap();
    let w = Workload::start_with(
        Command::new("python3")
            .arg("-c")
            .arg(child_script())
            .arg(hex(name))
            .arg(dir.path()),
    );
    // The name took: /proc says so (else the test proves nothing).
    let stat = std::fs::read(format!("/proc/{}/stat", w.pid)).unwrap();
    assert!(
        stat.windows(name.len()).any(|x| x == name),
        "prctl did not name the child: {}",
        String::from_utf8_lossy(&stat)
    );
    Hostile { w, _dir: dir }
}

const ALL: [&[u8]; 3] = [OSC_RED, SPLITTER, NOT_UTF8];

/// No control character (C0, DEL, C1) but the newlines that end lines.
fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for (i, line) in text.lines().enumerate() {
        if let Some(c) = line.chars().find(|c| c.is_control()) {
            panic!("{what}: line {i} holds the raw control character {c:?}: {line:?}\n--- whole output ---\n{text}");
        }
    }
}

fn run_ok(args: &[&str]) -> std::process::Output {
    let out = fdwatch(args);
    assert!(
        out.status.code().is_some_and(|c| c <= 3),
        "fdwatch {args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn plugin_output_is_one_clean_status_line() {
    for name in ALL {
        let h = hostile(name);
        let pid = h.w.pid_str();
        let out = run_ok(&[
            "check",
            "--pid",
            &pid,
            "--samples",
            "2",
            "--interval",
            "100ms",
        ]);
        assert_clean("check stdout", &out.stdout);
        assert_clean("check stderr", &out.stderr);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let first = text.lines().next().unwrap_or_default();
        assert!(first.starts_with("FDWATCH OK - pid "), "{text}");
        assert_eq!(
            first.matches('|').count(),
            1,
            "one perfdata separator: {first}"
        );
        let (status, perf) = first.split_once(" | ").expect("perfdata");
        assert!(
            status.contains("\\x1b"),
            "the name is shown, escaped: {status}"
        );
        assert!(
            perf.split(' ').all(|item| item.contains('=')),
            "perfdata items: {perf}"
        );
        // Selected by its argv[0] (`exec -a`), the same clean line.
        let out = run_ok(&["check", "--name", "*|argv0*", "--samples", "1"]);
        assert_clean("check --name stdout", &out.stdout);
        assert_clean("check --name stderr", &out.stderr);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // Other tests of this file run children with the same argv[0] at
        // the same time: the child is one of the processes selected.
        assert!(
            text.starts_with("FDWATCH OK - ") && text.contains(&format!("pid {pid} (")),
            "argv[0] selects the child: {text}"
        );
        assert_eq!(
            text.lines().next().unwrap_or_default().matches('|').count(),
            1,
            "one perfdata separator: {text}"
        );
    }
}

#[test]
fn prometheus_labels_are_escaped() {
    let h = hostile(SPLITTER);
    let pid = h.w.pid_str();
    let out = run_ok(&[
        "check",
        "--pid",
        &pid,
        "--samples",
        "1",
        "--format",
        "prometheus",
    ]);
    assert_clean("prometheus", &out.stdout);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut series = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (head, value) = line.rsplit_once(' ').expect("name and value");
        assert!(value.parse::<f64>().is_ok(), "{line}");
        if let Some(labels) = head.split_once('{').map(|(_, l)| l) {
            assert!(labels.ends_with('}'), "{line}");
            // Inside a label value only \\ \" \n may follow a backslash.
            let mut chars = labels.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    let next = chars.next();
                    assert!(
                        matches!(next, Some('\\' | '"' | 'n')),
                        "bad escape {next:?} in {line}"
                    );
                }
            }
            if labels.contains(&format!("pid=\"{pid}\"")) {
                series += 1;
                assert!(
                    labels.contains("comm=\"a|b\\nc<&\\\"\\\\x1b[2J\\\\x01\\\\x0c\""),
                    "{line}"
                );
            }
        }
    }
    assert!(series > 3, "{text}");
}

#[test]
fn json_is_escaped_by_serde_and_keeps_the_name() {
    for name in ALL {
        let h = hostile(name);
        let pid = h.w.pid_str();
        let out = run_ok(&["--pid", &pid, "--count", "1", "--json"]);
        assert_clean("json", &out.stdout);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["sample"]["comm"].as_str().or(v["comm"].as_str()),
            Some(String::from_utf8_lossy(name).as_ref()),
            "{v}"
        );
    }
}

#[test]
fn watch_screen_plain_and_top_show_no_raw_control_characters() {
    for name in ALL {
        let h = hostile(name);
        let pid = h.w.pid_str();
        for mode in ["--plain", "--screen"] {
            let out = run_ok(&["--pid", &pid, "--count", "2", "--interval", "100ms", mode]);
            assert_clean(mode, &out.stdout);
            assert_clean(mode, &out.stderr);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(text.contains("\\x1b"), "{mode}: name shown escaped: {text}");
        }
        let out = run_ok(&["top", "--plain", "--count", "1", "--pid", &pid]);
        assert_clean("top", &out.stdout);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(pid.as_str())),
            "a strange name does not hide a process from top: {text}"
        );
    }
}

#[test]
fn target_gone_message_is_escaped() {
    let mut h = hostile(OSC_RED);
    let pid = h.w.pid_str();
    let watch = Command::new(bin())
        .args(["--pid", &pid, "--interval", "100ms", "--plain"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    h.w.kill();
    let out = watch.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("exited"), "{err}");
    assert_clean("watch stderr", &out.stderr);
}

fn parse_xml(what: &str, text: &str) {
    if let Err(e) = roxmltree::Document::parse(text) {
        panic!("{what} is not well-formed XML: {e}\n{text}");
    }
}

#[test]
fn junit_and_svg_stay_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("run.xml");
    let plot = dir.path().join("run.svg");
    // `run`: the command line itself carries the hostile bytes, and the
    // gate fails, so the failure message and body are written too.
    let script = child_script().replace("sys.stdin.read()", "import time; time.sleep(1.5)");
    let out = Command::new(bin())
        .args(["run", "--max-fds", "2", "--interval", "100ms", "--junit"])
        .arg(&junit)
        .arg("--plot")
        .arg(&plot)
        .args(["--", "python3", "-c", &script, &hex(SPLITTER)])
        .arg(dir.path())
        .arg("\x1b[31m<&\"\x01\x0c'x'")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "the gate fails: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    parse_xml("run --junit", &xml);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase"))
        .unwrap();
    assert!(
        case.attribute("name")
            .unwrap_or_default()
            .contains("\\x1b[31m<&\""),
        "{xml}"
    );
    parse_xml("run --plot", &std::fs::read_to_string(&plot).unwrap());
    assert_clean("run stderr", &out.stderr);

    // `assert` and `watch --plot` name the process by its comm.
    for name in ALL {
        let h = hostile(name);
        let pid = h.w.pid_str();
        let junit = dir.path().join("assert.xml");
        let out = Command::new(bin())
            .args([
                "assert",
                "--pid",
                &pid,
                "--for",
                "1s",
                "--interval",
                "200ms",
                "--max-fds",
                "2",
                "--junit",
            ])
            .arg(&junit)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        parse_xml("assert --junit", &std::fs::read_to_string(&junit).unwrap());
        assert_clean("assert stderr", &out.stderr);
        let rec = dir.path().join("w.jsonl");
        let svg = dir.path().join("w.svg");
        let _ = std::fs::remove_file(&rec);
        run_ok(&[
            "--pid",
            &pid,
            "--count",
            "3",
            "--interval",
            "100ms",
            "--plain",
            "--record",
            rec.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ]);
        let text = std::fs::read_to_string(&svg).unwrap();
        parse_xml("watch --plot", &text);
        assert!(text.contains("\\x1b"), "the name is drawn, escaped");
        // The recording carries the name: `analyze` prints and draws it.
        let svg2 = dir.path().join("a.svg");
        let out = run_ok(&[
            "analyze",
            rec.to_str().unwrap(),
            "--plot",
            svg2.to_str().unwrap(),
        ]);
        assert_clean("analyze stdout", &out.stdout);
        assert_clean("analyze stderr", &out.stderr);
        parse_xml("analyze --plot", &std::fs::read_to_string(&svg2).unwrap());
    }
}
