//! What an operator gets around the binary: usage errors that keep clap's
//! detail on one line (and a plugin line for `check`), shell completions that
//! load, and a man page that renders.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::fdwatch;

/// Bad invocations: the one line on stderr keeps what clap found wrong (the
/// missing arguments, its "did you mean"), and the exit code is UNKNOWN (3).
#[test]
fn usage_errors_keep_clap_detail_on_one_line() {
    let cases: &[(&[&str], &[&str])] = &[
        // A check with no target names the choices it needs.
        (&["check"], &["required arguments", "--pid <PID>", "--name"]),
        // --plot without --record names --record.
        (
            &["watch", "--plot", "x.svg", "--pid", "1"],
            &["required arguments", "--record <FILE>"],
        ),
        (
            &["--pdi", "1"],
            &[
                "unexpected argument '--pdi'",
                "similar argument exists: '--pid'",
            ],
        ),
        (
            &["wathc"],
            &[
                "unrecognized subcommand 'wathc'",
                "similar subcommand exists: 'watch'",
            ],
        ),
        (
            &["check", "--pdi", "1"],
            &[
                "unexpected argument '--pdi'",
                "similar argument exists: '--pid'",
            ],
        ),
        (
            &["check", "--pid", "1", "--format", "xml"],
            &["invalid value 'xml' for '--format <FORMAT>'", "nagios"],
        ),
    ];
    for (args, wanted) in cases {
        let out = fdwatch(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{args:?}: one line on stderr, got {stderr:?}"
        );
        let line = lines[0];
        assert!(line.starts_with("fdwatch: "), "{args:?}: {line}");
        assert!(!line.contains("Usage:"), "{args:?}: no usage block: {line}");
        for w in *wanted {
            assert!(line.contains(w), "{args:?}: {w:?} missing from {line:?}");
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        if args[0] == "check" {
            // Nagios shows stdout: a bad option must still give a plugin line.
            // (`|` starts performance data, so the status line has `/`.)
            let msg = line.trim_start_matches("fdwatch: ").replace('|', "/");
            assert_eq!(
                stdout,
                format!("FDWATCH UNKNOWN - {msg}\n"),
                "{args:?}: plugin line on stdout"
            );
        } else {
            assert_eq!(stdout, "", "{args:?}: nothing on stdout");
        }
    }
}

/// `check --format json` with a bad option answers in JSON, like its other
/// UNKNOWN answers.
#[test]
fn check_usage_error_in_json_format() {
    for args in [
        &["check", "--format", "json", "--samples", "0"][..],
        &["check", "--format=json", "--pdi", "1"][..],
    ] {
        let out = fdwatch(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {:?}", out.stdout));
        assert_eq!(v["level"], "UNKNOWN", "{args:?}");
        let err = v["error"].as_str().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end(), format!("fdwatch: {err}"), "{args:?}");
    }
}

/// Help and version are not errors: full text, exit 0.
#[test]
fn help_and_version_exit_zero() {
    for args in [
        &["--help"][..],
        &["check", "--help"][..],
        &["--version"][..],
    ] {
        let out = fdwatch(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}

/// A tool the test needs: present, or a loud skip (a failure under CI, whose
/// .ci/run installs it).
fn have(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return true;
    }
    let msg = format!("SKIPPED: needs {tool} (Debian package {package})");
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set: this test must run)");
    }
    common::say_skipped(&msg);
    false
}

fn stdout_of(args: &[&str]) -> String {
    let out = fdwatch(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Run `shell` with `args` and `input` on its stdin.
fn shell(shell: &str, args: &[&str], input: &str) -> (bool, String, String) {
    run_with_stdin(Command::new(shell).args(args), input)
}

/// The bash script parses, registers `fdwatch`, and completes subcommands
/// and a flag's values.
#[test]
fn bash_completions_load_and_complete() {
    let script = stdout_of(&["completions", "bash"]);
    let (ok, _, err) = shell("bash", &["-n"], &script);
    assert!(ok, "bash -n: {err}");
    let probe = format!(
        "source <({bin} completions bash)\n\
         complete -p fdwatch\n\
         COMP_WORDS=(fdwatch wat); COMP_CWORD=1; _fdwatch fdwatch wat fdwatch\n\
         echo \"sub: ${{COMPREPLY[*]}}\"\n\
         COMP_WORDS=(fdwatch check --format ''); COMP_CWORD=3; _fdwatch fdwatch '' --format\n\
         echo \"format: ${{COMPREPLY[*]}}\"\n",
        bin = common::bin()
    );
    let (ok, out, err) = shell("bash", &["-s"], &probe);
    assert!(ok, "bash: {err}");
    assert!(out.contains("-F _fdwatch fdwatch"), "{out}");
    assert!(out.contains("sub: watch\n"), "{out}");
    assert!(out.contains("format: nagios json prometheus\n"), "{out}");
}

/// The zsh script parses and, loaded after compinit, registers `_fdwatch`.
#[test]
fn zsh_completions_load() {
    if !have("zsh", "zsh") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("_fdwatch");
    let script = stdout_of(&["completions", "zsh"]);
    assert!(
        script.starts_with("#compdef fdwatch"),
        "{}",
        &script[..40.min(script.len())]
    );
    std::fs::write(&file, &script).expect("write");
    let (ok, _, err) = shell("zsh", &["-n", file.to_str().expect("path")], "");
    assert!(ok, "zsh -n: {err}");
    let probe = format!(
        "autoload -Uz compinit && compinit -u -D\nsource {}\nprint -r -- \"comp: $_comps[fdwatch]\"\n",
        file.display()
    );
    let (ok, out, err) = shell("zsh", &["-f", "-s"], &probe);
    assert!(ok, "zsh: {err}");
    assert!(out.contains("comp: _fdwatch\n"), "{out} {err}");
}

/// The fish script parses and completes subcommands and a flag's values.
#[test]
fn fish_completions_load_and_complete() {
    if !have("fish", "fish") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("fdwatch.fish");
    std::fs::write(&file, stdout_of(&["completions", "fish"])).expect("write");
    let (ok, _, err) = shell("fish", &["-n", file.to_str().expect("path")], "");
    assert!(ok, "fish -n: {err}");
    let probe = format!(
        "source {}\ncomplete -C 'fdwatch wat'\ncomplete -C 'fdwatch check --format '\n",
        file.display()
    );
    let (ok, out, err) = shell("fish", &["--no-config"], &probe);
    assert!(ok, "fish: {err}");
    assert!(out.lines().any(|l| l.starts_with("watch\t")), "{out}");
    for v in ["nagios", "json", "prometheus"] {
        assert!(
            out.lines().any(|l| l.split('\t').next() == Some(v)),
            "{v}: {out}"
        );
    }
}

/// Every page renders with man(1) at 80 columns, with NAME and SYNOPSIS,
/// and groff finds nothing to warn about.
#[test]
fn man_pages_render() {
    if !have("man", "man-db") || !have("groff", "groff-base") {
        return;
    }
    let pages = stdout_of(&["man", "--list"]);
    let pages: Vec<&str> = pages.lines().collect();
    assert!(
        pages.contains(&"fdwatch") && pages.contains(&"fdwatch-check"),
        "{pages:?}"
    );
    assert!(
        !pages.contains(&"fdwatch-workload"),
        "hidden commands get no page"
    );
    for page in pages {
        let args: Vec<&str> = match page.strip_prefix("fdwatch-") {
            Some(sub) => vec!["man", sub],
            None => vec!["man"],
        };
        let roff = stdout_of(&args);
        let mut man = Command::new("man");
        man.args(["-l", "-"])
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat");
        let (ok, text, err) = run_with_stdin(&mut man, &roff);
        assert!(ok, "{page}: man: {err}");
        for section in ["NAME", "SYNOPSIS", "OPTIONS"] {
            assert!(
                text.lines().any(|l| l == section),
                "{page}: no {section}:\n{text}"
            );
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let name = words.iter().position(|w| *w == "NAME").expect("NAME");
        assert_eq!(
            words[name + 1..name + 3],
            [page, "-"],
            "{page}: NAME line:\n{text}"
        );
        // The footer names the program and its version.
        let version = format!("fdwatch {}", env!("CARGO_PKG_VERSION"));
        let footer = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        assert!(footer.contains(&version), "{page}: footer {footer:?}");
        assert!(
            text.lines().all(|l| l.chars().count() <= 80),
            "{page}: wider than 80"
        );
        let mut groff = Command::new("groff");
        groff.args(["-man", "-Tutf8", "-ww", "-z"]);
        let (ok, _, err) = run_with_stdin(&mut groff, &roff);
        assert!(ok && err.is_empty(), "{page}: groff warns: {err}");
    }
    let check = stdout_of(&["man", "check"]);
    assert!(
        check.contains("pidfile"),
        "fdwatch-check(1) lists its options"
    );
    let out = fdwatch(&["man", "nope"]);
    assert_eq!(out.status.code(), Some(3));
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
