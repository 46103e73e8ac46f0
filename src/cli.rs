//! The whole command-line interface, in one place (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::sample::bpf::Choice;
use crate::workload::KindCount;

#[derive(Debug, Parser)]
#[command(
    name = "fdwatch",
    version,
    about = "Tells you a Linux process will run out of file descriptors before it does, and why",
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (bad options, no such process, permission denied, ...).\n`fdwatch --pid N` is short for `fdwatch watch --pid N`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `fdwatch --pid N` watches like `fdwatch watch --pid N`.
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Colour levels on the screen, in `top` and in plain lines: auto (on a
    /// terminal, unless NO_COLOR is set; CLICOLOR_FORCE forces it), always, never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch one process live: every fd classified, against its limit, with the trend and verdict.
    Watch(WatchArgs),
    /// Health check for cron, systemd timers and monitoring agents (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    Check(CheckArgs),
    /// CI step: run a command, sample it to its exit, fail the step if it leaks.
    Run(RunArgs),
    /// CI step: watch a running process for a while, fail if it leaks.
    Assert(AssertArgs),
    /// Replay recordings (--record, state files, CSV, Prometheus range queries): the verdict over time, trend, forecast, patterns.
    Analyze(AnalyzeArgs),
    /// Which code opens the fds: leak sites and churn sites from the process's own stacks (BPF; root or CAP_BPF + CAP_PERFMON).
    Stacks(StacksArgs),
    /// Every process ranked by time to EMFILE, live (like top).
    Top(TopArgs),
    /// Prometheus exporter: /metrics for the top processes by usage and the selected ones.
    Serve(ServeArgs),
    /// Every open fd of a process, one row each (like `lsof -p`, `lsfd -p`): type, flags, position, target or socket state (docs/ls.md).
    Ls(LsArgs),
    /// Start a bundled workload that leaks netlink ROUTE sockets under a lowered limit, and watch it.
    Demo(DemoArgs),
    /// The bundled workload generator (used by `demo` and the tests).
    #[command(hide = true)]
    Workload(WorkloadArgs),
    /// Shell completions on stdout (e.g. `fdwatch completions bash > /usr/share/bash-completion/completions/fdwatch`).
    Completions(CompletionsArgs),
    /// The man page (roff) on stdout: `fdwatch man | man -l -`; `fdwatch man check` for fdwatch-check(1).
    Man(ManArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// A command's own page (`check` gives fdwatch-check(1)); none gives fdwatch(1).
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// List the page names instead (fdwatch, fdwatch-watch, ...), one per line.
    #[arg(long, conflicts_with = "command")]
    pub list: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The process to watch (one: a selector that matches several is refused, naming them).
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub pace: PaceArgs,
    /// JSON Lines on stdout, one object per sample (docs/json-schema.md).
    #[arg(long)]
    pub json: bool,
    /// Append every sample to FILE as JSON Lines (for `analyze` later).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// At the end, draw the recorded run as an SVG (needs --record).
    #[arg(long, value_name = "FILE.svg", requires = "record")]
    pub plot: Option<PathBuf>,
    /// One plain line per sample even on a terminal.
    #[arg(long, conflicts_with = "json")]
    pub plain: bool,
    /// The full screen even when stdout is not a terminal (e.g. to capture it).
    #[arg(long, conflicts_with_all = ["json", "plain"])]
    pub screen: bool,
    /// `full` classifies every fd; `count` only counts them (one stat() per sample).
    #[arg(long, value_enum, default_value_t = CensusArg::Full)]
    pub census: CensusArg,
    /// Exact syscall counts, by a BPF program (root or CAP_BPF + CAP_PERFMON)
    /// or else perf tracepoint counters (CAP_PERFMON; docs/syscalls.md):
    /// `auto` where allowed (else one line why), `on` or fail, `off`.
    #[arg(long, value_enum, default_value_t = SyscallsArg::Auto)]
    pub syscalls: SyscallsArg,
    /// The top leak and churn sites from the process's own stacks (BPF:
    /// root or CAP_BPF + CAP_PERFMON; docs/stacks.md), refreshed every few
    /// seconds; without the privileges one line says what is missing.
    #[arg(long)]
    pub stacks: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyscallsArg {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Auto,
    Bpf,
    Proc,
}

/// `--backend`, shared by every mode that classifies fds (watch, check, run, assert).
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Who classifies the fds: `bpf` (a kernel iterator, needs root or
    /// CAP_BPF + CAP_PERFMON), `proc` (/proc/<pid>/fd), `auto` (bpf where allowed).
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
}

impl BackendArgs {
    pub fn choice(&self) -> Choice {
        match self.backend {
            BackendArg::Auto => Choice::Auto,
            BackendArg::Bpf => Choice::Bpf,
            BackendArg::Proc => Choice::Proc,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct PaceArgs {
    /// Time between samples (humantime: 500ms, 1s, 1m).
    #[arg(short, long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this many samples.
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this long.
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// Which process(es) a mode looks at, the same in watch, check and assert.
/// `--cgroup`/`--container` narrow `--name`/`--exe`, or select on their own.
#[derive(Debug, Clone, Default, Args)]
pub struct TargetArgs {
    /// The process id.
    #[arg(short, long, value_name = "PID", conflicts_with_all = ["pidfile", "name", "exe", "cgroup", "container"])]
    pub pid: Option<i32>,
    /// Read the PID from a file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "exe", "cgroup", "container"])]
    pub pidfile: Option<PathBuf>,
    /// Processes whose name (comm or argv[0] base name) matches; `*` and `?` glob.
    #[arg(long, value_name = "PATTERN", conflicts_with = "exe")]
    pub name: Option<String>,
    /// Processes running this executable.
    #[arg(long, value_name = "PATH")]
    pub exe: Option<PathBuf>,
    /// Processes in this cgroup or below it (a path as in /proc/PID/cgroup).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// Processes of this container (its id or a prefix, found in the cgroup path).
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Only fds of these kinds (comma-separated or repeated: `tcp,udp`,
    /// `--kind unix`); `socket` means every socket kind. Names as in the
    /// census: regular, deleted, directory, pipe, tcp, netlink, eventfd, ...
    #[arg(long, value_name = "KIND", value_delimiter = ',')]
    pub kind: Vec<String>,
    /// One JSON document per process on stdout (docs/ls.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Monitoring-plugin status line with performance data.
    Nagios,
    Json,
    /// Prometheus text format (for the node_exporter textfile collector).
    Prometheus,
}

/// A mode that cannot start without a target (`watch` may: `fdwatch` alone
/// says what to do).
const TARGET_ARGS: [&str; 6] = ["pid", "pidfile", "name", "exe", "cgroup", "container"];

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").args(TARGET_ARGS).required(true).multiple(true)))]
pub struct CheckArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Samples in this run's burst.
    #[arg(long, value_name = "K", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub samples: u64,
    /// Time between the burst's samples.
    #[arg(short, long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Keep the history between runs in FILE (locked, bounded, written atomically).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = CheckFormat::Nagios)]
    pub format: CheckFormat,
    /// Write the answer (any --format) to FILE atomically (temp file +
    /// rename) instead of stdout; an UNKNOWN answer too.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// WARNING range (Monitoring Plugins syntax: 10, 10:, ~:10, 10:20, @10:20)
    /// on the fd count, or on the usage with `%` (80%); once for each.
    #[arg(short = 'w', long = "warning", value_name = "RANGE", value_parser = parse_range)]
    pub warning: Vec<crate::diagnose::Range>,
    /// CRITICAL range, as --warning.
    #[arg(short = 'c', long = "critical", value_name = "RANGE", value_parser = parse_range)]
    pub critical: Vec<crate::diagnose::Range>,
    /// Say on stderr what the long output notes (e.g. why syscalls are not counted).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Give up after this long with UNKNOWN "timed out after Ns" (the plugin
    /// `-t`: seconds, or a duration such as 30s); bounds the whole run, the
    /// wait for another run's state-file lock included.
    #[arg(short = 't', long, value_name = "SECONDS", default_value = "10", value_parser = parse_timeout)]
    pub timeout: Duration,
    #[arg(long, value_enum, default_value_t = CensusArg::Full)]
    pub census: CensusArg,
    /// Exact syscall counts over the burst (BPF or perf; root): auto, on, off.
    #[arg(long, value_enum, default_value_t = SyscallsArg::Auto)]
    pub syscalls: SyscallsArg,
    /// The top leak and churn sites of the fds opened during the burst, from
    /// the process's own stacks, in the long output (BPF; docs/stacks.md).
    #[arg(long)]
    pub stacks: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum FailOn {
    Never,
    Warning,
    Critical,
}

/// What makes a CI step fail, shared by `run` and `assert`.
#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// Fail when the fd count ever exceeds N.
    #[arg(long, value_name = "N")]
    pub max_fds: Option<u64>,
    /// Fail when fds grow by more than N between the warm-up point and the end;
    /// `KIND:N` limits one kind (e.g. netlink:0). Repeatable.
    #[arg(long, value_name = "[KIND:]N")]
    pub max_growth: Vec<String>,
    /// Growth is measured from this long after the start (ignore start-up).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Fail when the final verdict is at least this level.
    #[arg(long, value_enum, default_value_t = FailOn::Critical)]
    pub fail_on: FailOn,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write a JUnit XML test case to FILE (GitLab/Jenkins test reports).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// At the end, draw the run as an SVG: fds over time, limits, trend, verdicts.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// The top leak and churn sites from the process's own stacks in the
    /// report, its JSON and JUnit (BPF: root or CAP_BPF + CAP_PERFMON;
    /// docs/stacks.md); without the privileges one line says what is missing.
    #[arg(long)]
    pub stacks: bool,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Time between samples.
    #[arg(short, long, value_name = "DURATION", default_value = "200ms", value_parser = parse_interval)]
    pub interval: Duration,
    /// Count the command's descendants too (their fds summed with its own).
    #[arg(long)]
    pub children: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub gate: GateArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").args(TARGET_ARGS).required(true).multiple(true)))]
pub struct AssertArgs {
    /// The running process to watch (one).
    #[command(flatten)]
    pub target: TargetArgs,
    /// How long to watch it.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub watch_for: Duration,
    /// Time between samples.
    #[arg(short, long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub gate: GateArgs,
}

#[derive(Debug, Clone, Args)]
pub struct StacksArgs {
    /// The running process to trace (every thread, including threads started later).
    #[arg(short, long, value_name = "PID")]
    pub pid: i32,
    /// How long to trace it (Ctrl-C reports early).
    #[arg(long = "for", value_name = "DURATION", default_value = "30s", value_parser = parse_interval)]
    pub trace_for: Duration,
    /// Sites shown in each list.
    #[arg(long, value_name = "K", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub top: u32,
    /// One JSON document instead of the text report.
    #[arg(long, conflicts_with = "folded")]
    pub json: bool,
    /// Folded stacks for flame-graph tools (inferno, flamegraph.pl): `still-open;...` and `opened;...` lines.
    #[arg(long)]
    pub folded: bool,
}

/// Input formats of `analyze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// Detect from the content.
    Auto,
    /// fdwatch JSON Lines (--json output, --record files).
    Jsonl,
    /// An fdwatch check --state file.
    State,
    /// unix_time,fds[,soft_limit], header optional.
    Csv,
    /// The JSON of a Prometheus /api/v1/query_range on process_open_fds (and process_max_fds).
    Prometheus,
}

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Recordings to analyse.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Input format (default: detected from each file's content).
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub format: InputFormat,
    /// One JSON document on stdout (docs/analyze.md).
    #[arg(long)]
    pub json: bool,
    /// Draw the (worst) series to an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

/// Which processes `top` shows and `serve` always exports (all must match).
#[derive(Debug, Clone, Args)]
pub struct SelectArgs {
    /// Only processes of this user (name or uid).
    #[arg(short, long, value_name = "NAME|UID")]
    pub user: Option<String>,
    /// Only processes whose name (comm or argv[0] base name) matches; `*` and `?` glob.
    #[arg(long, value_name = "PATTERN")]
    pub name: Option<String>,
    /// Only processes running this executable.
    #[arg(long, value_name = "PATH")]
    pub exe: Option<PathBuf>,
    /// Only processes in this cgroup or below it (a path as in /proc/PID/cgroup).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// Only processes of this container (its id or a prefix, found in the cgroup path).
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    /// Only these processes (repeatable).
    #[arg(short, long, value_name = "PID")]
    pub pid: Vec<i32>,
    /// Only the process whose pid this file holds, read again at every
    /// refresh (a restarted daemon is followed).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
}

/// `top --sort`: the host module's own sort keys.
pub use crate::host::SortKey as TopSort;

#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Time between refreshes.
    #[arg(short, long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this many refreshes.
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Rank by this column (default: time to EMFILE, then usage).
    #[arg(long, value_enum, default_value_t = TopSort::Eta)]
    pub sort: TopSort,
    /// Show at most N rows (default: what fits the terminal, or 25).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// One JSON document per refresh.
    #[arg(long)]
    pub json: bool,
    /// Plain text even on a terminal.
    #[arg(long, conflicts_with = "json")]
    pub plain: bool,
    /// Classified censuses (a stat per fd) per refresh, for the KIND of the first growing rows.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub classify: usize,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// Read this directory instead of /proc (tests).
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9779")]
    pub listen: String,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Besides the selected processes, export the N with the highest usage.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
    /// Time between refreshes (the sampler's pace; scrapes read the last refresh).
    #[arg(short, long, value_name = "DURATION", default_value = "5s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Classified censuses per refresh (by-kind metrics for the first growing processes).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub classify: usize,
    /// Leak and churn site series for the processes selected by --pid (at
    /// most 8), from their own stacks (BPF; docs/stacks.md).
    #[arg(long, requires = "pid")]
    pub stacks: bool,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// Read this directory instead of /proc (tests).
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CensusArg {
    Full,
    Count,
}

/// Verdict thresholds, shared by every mode that gives a verdict.
#[derive(Debug, Clone, Args)]
pub struct ThresholdArgs {
    /// WARNING when more than this share of the soft limit is in use (80% or
    /// 80), or outside a range in percent (10:80, @90:95).
    #[arg(long, value_name = "PERCENT|RANGE", default_value = "80%", value_parser = parse_usage_range)]
    pub warn_usage: crate::diagnose::Range,
    /// CRITICAL when more than this share of the soft limit is in use (or a range).
    #[arg(long, value_name = "PERCENT|RANGE", default_value = "95%", value_parser = parse_usage_range)]
    pub crit_usage: crate::diagnose::Range,
    /// WARNING when the limit is forecast within this time (seconds, or 1h, 30m).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub warn_eta: Duration,
    /// CRITICAL when the limit is forecast within this time.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub crit_eta: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// netlink ROUTE sockets leaked per second by the workload.
    #[arg(long, default_value_t = 8.0)]
    pub rate: f64,
    /// Soft RLIMIT_NOFILE the workload runs under.
    #[arg(long, default_value_t = 512)]
    pub soft_limit: u64,
    /// Time between samples.
    #[arg(short, long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// One plain line per sample even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// JSON Lines instead of the screen.
    #[arg(long)]
    pub json: bool,
    /// Keep watching this long after the workload hits EMFILE.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub linger: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Lower the soft RLIMIT_NOFILE first.
    #[arg(long)]
    pub soft_limit: Option<u64>,
    /// Open and hold KIND:N at start (repeatable).
    #[arg(long, value_name = "KIND:N")]
    pub hold: Vec<KindCount>,
    /// Open and keep KIND:RATE per second (repeatable).
    #[arg(long, value_name = "KIND:RATE")]
    pub leak: Vec<KindCount>,
    /// Open and close KIND:RATE per second (repeatable), spread over --threads.
    #[arg(long, value_name = "KIND:RATE")]
    pub churn: Vec<KindCount>,
    /// A pool that fills to PEAK over PERIOD and is then released (repeatable).
    #[arg(long, value_name = "KIND:PEAK:PERIOD")]
    pub sawtooth: Vec<crate::workload::Sawtooth>,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Extra churn threads started after --late-after.
    #[arg(long, default_value_t = 0)]
    pub late_threads: usize,
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub late_after: Duration,
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub start_after: Duration,
    /// Stop leaking/churning after this long and print `done {counts}`.
    #[arg(long, value_parser = parse_duration)]
    pub churn_for: Option<Duration>,
    #[arg(long, value_parser = parse_duration)]
    pub exit_after: Option<Duration>,
    /// Keep running when stdin closes (default: stdin EOF ends the workload).
    #[arg(long)]
    pub ignore_stdin: bool,
}

/// A duration: plain seconds (`3600`, `0.5`, as monitoring plugins take
/// them) or with units (`500ms`, `1h`, `1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return t
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| format!("'{s}' is not a number of seconds"));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("'{s}' is not a duration ({e}); try seconds (3600) or 500ms, 10s, 5m, 1h")
    })
}

/// A threshold range in the Monitoring Plugins syntax (`-w/-c`).
pub fn parse_range(s: &str) -> Result<crate::diagnose::Range, String> {
    // clap's line quotes the whole value; the error names the bad part.
    let r = crate::diagnose::Range::parse(s).map_err(|e| e.to_string())?;
    if r.percent {
        check_percent_bounds(s, &r)?;
    }
    Ok(r)
}

/// A usage threshold: `80%`/`80` (alert above) or a range in percent (`10:80`).
pub fn parse_usage_range(s: &str) -> Result<crate::diagnose::Range, String> {
    let r = crate::diagnose::Range::parse(s)
        .map_err(|e| format!("'{s}' is not a percentage or a range of them ({e})"))?
        .percent();
    check_percent_bounds(s, &r)?;
    Ok(r)
}

fn check_percent_bounds(s: &str, r: &crate::diagnose::Range) -> Result<(), String> {
    let outside = |x: f64| x.is_finite() && !(0.0..=100.0).contains(&x);
    if outside(r.start) || outside(r.end) {
        return Err(format!("'{s}' is not between 0% and 100%"));
    }
    Ok(())
}

pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("the interval must be greater than zero".into());
    }
    Ok(d)
}

/// A plugin timeout: whole seconds (`-t 30`, the monitoring-plugin form) or a duration.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => parse_duration(s)?,
    };
    if d.is_zero() {
        return Err("the timeout must be greater than zero".into());
    }
    Ok(d)
}

/// `80%` or `80` -> 0.80.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage (e.g. 80%)"))?;
    if !(0.0..=100.0).contains(&n) {
        return Err(format!("'{s}' is not between 0% and 100%"));
    }
    Ok(n / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn percent_and_durations() {
        assert_eq!(parse_percent("80%"), Ok(0.8));
        assert_eq!(parse_percent("95"), Ok(0.95));
        assert!(parse_percent("180%").is_err());
        assert!(parse_percent("abc").is_err());
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("abc").is_err());
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        // Plain seconds, as plugins take them.
        assert_eq!(parse_duration("3600"), parse_duration("1h"));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("1.2.3").is_err());
        assert!(parse_duration("-5").is_err());
        assert!(parse_interval("0").is_err());
        assert_eq!(parse_usage_range("80").unwrap().to_string(), "80");
        assert_eq!(parse_usage_range("10:80").unwrap().to_string(), "10:80");
        assert!(parse_usage_range("180%").is_err());
        assert!(parse_range("120%").is_err());
        assert!(parse_range("120").is_ok(), "a count may exceed 100");
    }
}
