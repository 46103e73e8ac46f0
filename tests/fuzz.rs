//! A stable-Rust fuzzer for every parser of outside text: the `analyze`
//! inputs (CSV, JSON Lines, Prometheus JSON, state files; each replayed and
//! reported as `analyze` does, since the panics were found downstream of the
//! parsers), the state file `check --state` keeps, and the /proc text parsers
//! (`stat`, `limits`, `status`, `io`, `sys/fs`, the socket tables).
//!
//! It mutates a corpus built from tests/fixtures (bit flips, byte inserts and
//! deletes, splices, numeric edge cases, empty fields, long lines, invalid
//! UTF-8) with a seeded PRNG under `catch_unwind`. A panic is written to the
//! crashes directory with its seed, and the test fails.
//!
//! - `cargo test --test fuzz`: the regression corpus
//!   (tests/fixtures/fuzz-regressions, one file per input that once panicked
//!   or misbehaved, named `TARGET--NAME`) and a short deterministic run.
//! - `FDWATCH_FUZZ_SECS=60 cargo test --release --test fuzz -- --ignored`:
//!   the time-bounded run `.ci/run` does; `FDWATCH_FUZZ_SEED` picks the seed,
//!   `FDWATCH_FUZZ_CRASHES` the directory (default target/fuzz-crashes).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fdwatch::diagnose::Thresholds;
use fdwatch::input::{self, Format};
use fdwatch::sample::net::Table;
use fdwatch::sample::procroot::ProcRoot;

const PID: i32 = 4242;

/// What a fuzz input is fed to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Analyze(Option<Format>),
    StateFile,
    ProcStat,
    ProcLimits,
    ProcStatus,
    ProcIo,
    SysFileNr,
    Net(Table),
    /// `/proc/PID/cgroup` (serve's container and pod labels).
    ProcCgroup,
    /// `/proc/PID/fdinfo/N` (`fdwatch ls`).
    Fdinfo,
    /// `/proc/self/stat`'s usage fields and `/proc/stat`'s btime (serve's
    /// process_* metrics).
    StatUsage,
    /// `/proc/PID/maps` (the stack tracer's executable ranges).
    Maps,
    /// A Monitoring Plugins range (`-w`/`-c`: from a monitoring config).
    Range,
}

impl Target {
    fn name(self) -> String {
        match self {
            Target::Analyze(None) => "analyze-auto".into(),
            Target::Analyze(Some(f)) => format!("analyze-{}", f.name()),
            Target::StateFile => "state-file".into(),
            Target::ProcStat => "proc-stat".into(),
            Target::ProcLimits => "proc-limits".into(),
            Target::ProcStatus => "proc-status".into(),
            Target::ProcIo => "proc-io".into(),
            Target::SysFileNr => "sys-file-nr".into(),
            Target::Net(t) => format!("net-{t:?}").to_lowercase(),
            Target::ProcCgroup => "proc-cgroup".into(),
            Target::Fdinfo => "proc-fdinfo".into(),
            Target::StatUsage => "proc-stat-usage".into(),
            Target::Maps => "proc-maps".into(),
            Target::Range => "range".into(),
        }
    }

    fn all() -> Vec<Target> {
        let mut v = vec![
            Target::Analyze(None),
            Target::Analyze(Some(Format::Csv)),
            Target::Analyze(Some(Format::Jsonl)),
            Target::Analyze(Some(Format::Prometheus)),
            Target::Analyze(Some(Format::State)),
            Target::StateFile,
            Target::ProcStat,
            Target::ProcLimits,
            Target::ProcStatus,
            Target::ProcIo,
            Target::SysFileNr,
            Target::ProcCgroup,
            Target::Fdinfo,
            Target::StatUsage,
            Target::Maps,
            Target::Range,
        ];
        v.extend(Table::ALL.iter().map(|t| Target::Net(*t)));
        v
    }

    fn by_name(name: &str) -> Option<Target> {
        Target::all().into_iter().find(|t| t.name() == name)
    }
}

/// A scratch proc root and state directory the /proc and state targets write into.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc");
        copy_tree(&fixture, dir.path());
        Scratch { dir }
    }

    fn root(&self) -> ProcRoot {
        ProcRoot::new(self.dir.path())
    }

    fn put(&self, rel: &str, data: &[u8]) {
        std::fs::write(self.dir.path().join(rel), data).unwrap();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Feed one input to one target; anything but a panic is fine.
fn run(target: Target, data: &[u8], scratch: &Scratch, deep: bool) {
    let text = String::from_utf8_lossy(data);
    match target {
        Target::Analyze(format) => {
            let Ok(inp) = input::parse_bytes("fuzz.in", data, format) else {
                return;
            };
            // Downstream of the parser, as analyze does it: replay, report, plot.
            let th = Thresholds::default();
            for s in &inp.series {
                let tl = fdwatch::monitor::replay(&s.samples, &th);
                let _ = fdwatch::report::timeline::text(&s.info.name, &tl, &s.info.notes);
                if deep {
                    let _ = fdwatch::report::plot::render_svg(&s.samples, &tl);
                }
            }
        }
        Target::StateFile => {
            let path = scratch.dir.path().join("state.json");
            std::fs::write(&path, data).unwrap();
            let _ = fdwatch::state::LockedState::open(&path, &|| None);
        }
        Target::ProcStat => {
            let _ = fdwatch::sample::host::parse_stat(&text);
            scratch.put("4242/stat", data);
            let _ = scratch.root().identity(PID);
        }
        Target::ProcLimits => {
            scratch.put("4242/limits", data);
            let who = fdwatch::sample::Identity {
                pid: PID,
                comm: "x".into(),
                start_time: 1,
            };
            let _ = scratch.root().fd_limits(PID, &who);
        }
        Target::ProcStatus => {
            scratch.put("4242/status", data);
            let _ = scratch.root().activity(PID);
        }
        Target::ProcIo => {
            scratch.put("4242/io", data);
            let _ = scratch.root().activity(PID);
        }
        Target::SysFileNr => {
            scratch.put("sys/fs/file-nr", data);
            let _ = scratch.root().system_files();
        }
        Target::Net(table) => {
            let mut out = std::collections::HashMap::new();
            fdwatch::sample::net::parse_table(table, &text, &|_| true, &mut out);
        }
        Target::ProcCgroup => {
            let _ = fdwatch::sample::cgroup::parse_file(&text);
            for line in text.lines() {
                let _ = fdwatch::sample::cgroup::parse_path(line);
            }
        }
        Target::Fdinfo => {
            let _ = fdwatch::sample::listing::parse_fdinfo(data);
        }
        Target::StatUsage => {
            let _ = fdwatch::sample::stat::parse_usage(&text);
            let _ = fdwatch::sample::own::parse_btime(&text);
        }
        Target::Maps => {
            let _ = fdwatch::stacks::symbols::parse_exec_ranges(&text);
        }
        Target::Range => {
            if let Ok(r) = fdwatch::diagnose::Range::parse(&text) {
                let _ = r.to_string();
            }
        }
    }
}

/// The seeds of each target: fixtures, and samples written the way fdwatch writes them.
fn corpus(target: Target) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let read = |rel: &str| std::fs::read(root.join(rel)).unwrap_or_default();
    let analyze: Vec<Vec<u8>> = {
        let mut v: Vec<Vec<u8>> = std::fs::read_dir(root.join("analyze"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| std::fs::read(e.path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        v.push(jsonl_recording().into_bytes());
        v
    };
    match target {
        Target::Analyze(_) => analyze,
        Target::StateFile => vec![read("analyze/state.json")],
        Target::ProcStat => vec![read("proc/4242/stat")],
        Target::ProcLimits => vec![read("proc/4242/limits")],
        Target::ProcStatus => vec![read("proc/4242/status")],
        Target::ProcIo => vec![read("proc/4242/io")],
        Target::SysFileNr => vec![read("proc/sys/fs/file-nr")],
        Target::Net(t) => vec![read(&format!(
            "proc/4242/net/{}",
            format!("{t:?}").to_lowercase()
        ))],
        Target::ProcCgroup => vec![
            b"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n".to_vec(),
            b"12:pids:/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n1:name=systemd:/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n0::/\n".to_vec(),
        ],
        Target::Fdinfo => vec![
            b"pos:\t5\nflags:\t02100002\nmnt_id:\t25\nino:\t4330482\n".to_vec(),
            b"pos:\t0\nflags:\t02000000\nmnt_id:\t15\nino:\t1057\neventfd-count:                0\neventfd-id: 3\n".to_vec(),
        ],
        Target::StatUsage => vec![read("proc/4242/stat"), b"cpu  1 2 3 4\nbtime 1700000000\nprocesses 42\n".to_vec()],
        Target::Maps => vec![b"55d0c0a00000-55d0c0a21000 r-xp 00002000 fd:01 1057 /usr/bin/leaky\n7f1c2e228000-7f1c2e3bd000 r-xp 00028000 fd:01 2049 /usr/lib/x86_64-linux-gnu/libc.so.6\n7ffd5c9f1000-7ffd5c9f3000 r-xp 00000000 00:00 0 [vdso]\n".to_vec()],
        Target::Range => vec![b"10".to_vec(), b"@10:20".to_vec(), b"~:80%".to_vec()],
    }
}

/// A short full-census recording: kinds, named series, a verdict to skip.
fn jsonl_recording() -> String {
    let mut out = String::new();
    for i in 0..12u64 {
        out.push_str(&format!(
            r#"{{"schema":1,"backend":"procfs","pid":4242,"comm":"rpc-msg","start_time":208997,"unix_time":{},"mono_time":{},"fds":{},"limits":{{"soft":512,"hard":4096}},"system":{{"allocated":4000,"unused":0,"max":9223372036854775807,"nr_open":1073741816}},"kinds":{{"regular":5,"netlink":{},"tcp":3}},"tcp_states":{{"ESTABLISHED":2,"CLOSE_WAIT":1}},"netlink_protocols":{{"ROUTE":{}}},"repeated_paths":[{{"name":"/var/log/app.log","count":2}}],"remote_endpoints":[],"deleted_bytes":4096,"new_inodes":{{"netlink":8}},"vanished":0,"verdict":{{"level":"OK","reasons":[]}}}}"#,
            1_795_689_720 + i,
            1000 + i,
            8 + 8 * i,
            8 * i,
            8 * i
        ));
        out.push('\n');
    }
    out
}

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Numbers and tokens that broke or could break parsers.
const DICTIONARY: &[&str] = &[
    "1e308",
    "-1e300",
    "1e19",
    "1e20",
    "300000000000",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "+Inf",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "-1",
    "-0",
    "0",
    "0.0",
    "1e-320",
    "1e999999",
    "2147483648",
    "",
    ",",
    ",,",
    "\"",
    "{",
    "}",
    "[",
    "]",
    "null",
    "true",
    "\"schema\":99",
    "\"mono_time\":-1e300",
    "\"unix_time\":1e20",
    "unlimited",
    ")",
    "((",
    ":",
    "\n",
    "\r\n",
    "\u{feff}",
    "\u{0}",
    "2026-11-26T10:00:00Z",
    "9999-12-31T23:59:59Z",
    "10000-01-01T00:00:00Z",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(10) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                input.drain(i..i + n);
            }
            3 => {
                // Splice: a piece of another seed.
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a + 1);
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[a..b].iter().copied());
                }
            }
            4..=6 => {
                // Replace a number (or any token) by an edge case.
                let word = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                let starts: Vec<usize> = (0..len)
                    .filter(|&i| {
                        input[i].is_ascii_digit() && (i == 0 || !input[i - 1].is_ascii_digit())
                    })
                    .collect();
                if starts.is_empty() {
                    let at = rng.below(len + 1);
                    input.splice(at..at, word.iter().copied());
                } else {
                    let s = starts[rng.below(starts.len())];
                    let mut e = s;
                    while e < len && (input[e].is_ascii_digit() || input[e] == b'.') {
                        e += 1;
                    }
                    input.splice(s..e, word.iter().copied());
                }
            }
            7 => {
                // A long line.
                let at = rng.below(len + 1);
                let n = 1 + rng.below(70_000);
                input.splice(at..at, std::iter::repeat_n(b'7', n));
            }
            8 => {
                let at = rng.below(len + 1);
                input.splice(at..at, [0xff, 0xfe, 0xc3]);
            }
            _ => {
                // Duplicate or cut at a line.
                if rng.below(2) == 0 {
                    input.truncate(rng.below(len + 1));
                } else if let Some(nl) = input.iter().position(|&b| b == b'\n') {
                    let line = input[..=nl].to_vec();
                    let at = rng.below(len + 1);
                    input.splice(at..at, line);
                }
            }
        }
    }
    input.truncate(1 << 21);
}

fn crashes_dir() -> PathBuf {
    std::env::var_os("FDWATCH_FUZZ_CRASHES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes"))
}

/// Run `iterations` (or until `budget`) mutations per target; the panics found.
fn fuzz(seed: u64, budget: Duration, iterations: usize) -> Vec<String> {
    let scratch = Scratch::new();
    let targets = Target::all();
    let per_target = budget / targets.len() as u32;
    let mut found = Vec::new();
    // The panic message is printed by the default hook; keep it.
    for (ti, target) in targets.iter().enumerate() {
        let seeds = corpus(*target);
        let mut rng = Rng(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(ti as u64 + 1)) | 1);
        let start = Instant::now();
        let mut n = 0;
        while n < iterations && start.elapsed() < per_target {
            let case_seed = rng.next() | 1;
            let mut case_rng = Rng(case_seed);
            let mut data = seeds[case_rng.below(seeds.len())].clone();
            mutate(&mut case_rng, &seeds, &mut data);
            let deep = n % 64 == 0;
            if catch_unwind(AssertUnwindSafe(|| run(*target, &data, &scratch, deep))).is_err() {
                let dir = crashes_dir();
                let _ = std::fs::create_dir_all(&dir);
                let file = dir.join(format!("{}--seed-{case_seed:016x}", target.name()));
                let _ = std::fs::write(&file, &data);
                found.push(format!(
                    "{}: panicked (case seed {case_seed:#x}); input saved as {}",
                    target.name(),
                    file.display()
                ));
            }
            n += 1;
        }
        eprintln!("fuzz: {}: {n} inputs", target.name());
    }
    found
}

#[test]
fn regression_corpus_never_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-regressions");
    let scratch = Scratch::new();
    let mut ran = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let target_name = name.split("--").next().unwrap_or("");
        let target = Target::by_name(target_name)
            .unwrap_or_else(|| panic!("{name}: no target {target_name}"));
        let data = std::fs::read(&path).unwrap();
        run(target, &data, &scratch, true);
        // Whatever the file's name says, no format may panic on it.
        for f in [
            None,
            Some(Format::Csv),
            Some(Format::Jsonl),
            Some(Format::Prometheus),
        ] {
            run(Target::Analyze(f), &data, &scratch, true);
        }
        ran += 1;
    }
    assert!(ran >= 5, "the regression corpus is there ({ran} files)");
}

#[test]
fn short_fuzz_run_finds_no_panic() {
    let found = fuzz(0x5eed, Duration::from_secs(30), 150);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
#[ignore = "time-bounded fuzzing: .ci/run runs it with FDWATCH_FUZZ_SECS"]
fn fuzz_for_a_while() {
    let secs: u64 = std::env::var("FDWATCH_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("FDWATCH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("fuzz: seed {seed} (FDWATCH_FUZZ_SEED={seed} repeats this run), {secs} s");
    let found = fuzz(seed, Duration::from_secs(secs), usize::MAX);
    assert!(found.is_empty(), "{}", found.join("\n"));
}
