//! Shared by the tests of the stack tracer (tests/stacks.rs,
//! tests/stacks_modes.rs): the fixture programs built here, the tools they
//! need, and the count of stack tracers loaded on the machine (bpftool).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::say_skipped;

pub fn need_tool(what: &str, tool: &str, args: &[&str]) -> bool {
    if Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return true;
    }
    let msg = format!("SKIPPED: {what}: needs {tool}");
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set: this test must run; .ci/run installs it)");
    }
    say_skipped(&msg);
    false
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stacks")
        .join(name)
}

/// Build dir shared by the tests of this run.
pub fn build_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

pub fn build(out: &str, cmd: &mut Command) -> PathBuf {
    let path = build_dir().join(out);
    if !path.exists() {
        let o = cmd.output().expect("run the compiler");
        assert!(
            o.status.success(),
            "building {out}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    path
}

pub fn build_c(frame_pointers: bool) -> PathBuf {
    let out = if frame_pointers {
        "leaky-fp"
    } else {
        "leaky-nofp"
    };
    let flag = if frame_pointers {
        "-fno-omit-frame-pointer"
    } else {
        "-fomit-frame-pointer"
    };
    build(
        out,
        Command::new("cc")
            .args(["-O2", "-g", flag, "-pthread"])
            .arg(fixture("leaky.c"))
            .arg("-o")
            .arg(build_dir().join(out)),
    )
}

/// Programs and maps of fdwatch's stack tracer loaded on the machine.
pub fn tracer_objects() -> (usize, usize) {
    let count = |what: &str, names: &[&str]| -> usize {
        let o = Command::new("bpftool")
            .args([what, "show"])
            .output()
            .expect("bpftool");
        let text = String::from_utf8_lossy(&o.stdout);
        text.lines()
            .filter(|l| names.iter().any(|n| l.contains(&format!(" name {n} "))))
            .count()
    };
    (
        count("prog", &["fdw_sys_exit"]),
        count(
            "map",
            &["fdw_fds", "fdw_stacks", "fdw_sites", "fdw_scan", "fdw_text"],
        ),
    )
}

pub fn wait_gone() -> (usize, usize) {
    // The kernel frees a program after its last reference goes (RCU).
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left = tracer_objects();
        if left == (0, 0) || Instant::now() > end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
