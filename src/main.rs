//! The `fdwatch` binary: parse, dispatch, map every outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use fdwatch::cli::{
    AnalyzeArgs, CensusArg, CheckArgs, CheckFormat, Cli, Command, FailOn, GateArgs, SelectArgs,
    SyscallsArg, ThresholdArgs, WatchArgs,
};
use fdwatch::cmd::watch::{Output, SyscallMode, WatchOptions};
use fdwatch::cmd::{
    analyze, check, ci, completions, demo, ls, serve, stacks, targets::Targets, top, watch,
};
use fdwatch::diagnose::Thresholds;
use fdwatch::sample::{Census, ProcRoot};
use fdwatch::workload;

/// Exit codes (README): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
const EXIT_UNKNOWN: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(color_after_subcommand(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(mut e) => {
            suggest_flag(&mut e);
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line, and usage errors are UNKNOWN (3), never clap's 2.
            let msg = format!("{} (see fdwatch --help)", usage_error_line(&e.to_string()));
            // A monitoring agent shows only stdout: a check answers in its
            // plugin format even when its options are wrong.
            let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
            if args.get(1).is_some_and(|a| a == "check") {
                let format = if asks_json(&args) {
                    check::Format::Json
                } else {
                    check::Format::Nagios
                };
                return ExitCode::from(check::unknown(&anyhow::anyhow!(msg), format, None, "?"));
            }
            eprintln!("fdwatch: {msg}");
            return ExitCode::from(EXIT_UNKNOWN);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!(
                "fdwatch: {}",
                fdwatch::report::escape::terminal(&fdwatch::cmd::error_line(&err))
            );
            // Every error that reaches here means "could not determine the state".
            ExitCode::from(EXIT_UNKNOWN)
        }
    }
}

/// `fdwatch --color never top`: clap refuses any option before a
/// subcommand here (`args_conflicts_with_subcommands`, which `fdwatch --pid
/// N` needs), global ones too; a leading `--color` is moved after the
/// subcommand's name, where it is accepted.
fn color_after_subcommand(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let mut moved = Vec::new();
    while let Some(a) = args.get(1).and_then(|a| a.to_str()) {
        if a == "--color" && args.len() > 2 {
            moved.extend(args.drain(1..3));
        } else if a.starts_with("--color=") {
            moved.push(args.remove(1));
        } else {
            break;
        }
    }
    let at = match args.get(1).and_then(|a| a.to_str()) {
        Some(sub) if Cli::command().find_subcommand(sub).is_some() => 2,
        _ => 1,
    };
    args.splice(at..at, moved);
    args
}

/// Clap's message on one line: the `error: ` prefix, the usage block and the
/// "For more information" hint dropped, everything else kept (the missing
/// arguments, `tip: a similar argument exists: '--pid'`, possible values).
fn usage_error_line(rendered: &str) -> String {
    let mut line = String::new();
    for l in rendered.lines() {
        let l = l.trim();
        if l.starts_with("Usage:") {
            break;
        }
        if l.is_empty() || l.starts_with("For more information") {
            continue;
        }
        let l = l.strip_prefix("error: ").unwrap_or(l);
        if !line.is_empty() {
            // A list follows its colon; other parts (tips) are clauses.
            line.push_str(if line.ends_with(':') { " " } else { "; " });
        }
        line.push_str(l);
    }
    if line.is_empty() {
        line.push_str("invalid arguments");
    }
    line
}

/// clap suggests a flag only when it is close by Jaro similarity, which
/// misses a swapped pair of letters (`--pdi` for `--pid`): where clap has no
/// suggestion, offer the flag of the same command one edit away, in clap's
/// own words.
fn suggest_flag(e: &mut clap::Error) {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::CommandFactory;
    if e.kind() != ErrorKind::UnknownArgument || e.get(ContextKind::SuggestedArg).is_some() {
        return;
    }
    let Some(ContextValue::String(bad)) = e.get(ContextKind::InvalidArg) else {
        return;
    };
    let Some(bad) = bad.strip_prefix("--") else {
        return;
    };
    let bad = bad.split('=').next().unwrap_or(bad).to_string();
    let root = Cli::command();
    let sub = std::env::args_os().nth(1);
    let cmd = sub
        .as_ref()
        .and_then(|s| s.to_str())
        .and_then(|s| root.find_subcommand(s))
        .unwrap_or(&root);
    let near = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long())
        .find(|long| edit_distance(long, &bad) == 1);
    if let Some(long) = near {
        e.insert(
            ContextKind::SuggestedArg,
            ContextValue::String(format!("--{long}")),
        );
    }
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and swaps of two adjacent characters each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// Whether a check that failed to parse asked for `--format json` (so its
/// UNKNOWN answer is JSON like its others).
fn asks_json(args: &[std::ffi::OsString]) -> bool {
    args.iter()
        .zip(args.iter().skip(1))
        .any(|(a, b)| a == "--format" && b == "json")
        || args.iter().any(|a| a == "--format=json")
}

fn thresholds(t: &ThresholdArgs) -> anyhow::Result<Thresholds> {
    let (w, c) = (t.warn_usage, t.crit_usage);
    let simple = |r: &fdwatch::diagnose::Range| r.start == 0.0 && !r.inside;
    if simple(&w) && simple(&c) && w.end > c.end {
        anyhow::bail!(
            "--warn-usage ({}%) must not exceed --crit-usage ({}%)",
            w.end,
            c.end
        );
    }
    if t.warn_eta < t.crit_eta {
        anyhow::bail!("--warn-eta must not be shorter than --crit-eta");
    }
    // `top` and `serve` compare usage with one ratio; a range that alerts
    // low too gives them 0 (every process judged in full).
    let ratio = |r: &fdwatch::diagnose::Range| if simple(r) { r.end / 100.0 } else { 0.0 };
    Ok(Thresholds {
        warn_usage: ratio(&w),
        crit_usage: ratio(&c),
        warn_eta: t.warn_eta.as_secs_f64(),
        crit_eta: t.crit_eta.as_secs_f64(),
        warn_usage_range: Some(w),
        crit_usage_range: Some(c),
        ..Thresholds::default()
    })
}

/// check's `-w/-c`: at most one range on the count and one in percent.
fn plugin_ranges(
    th: &mut Thresholds,
    warning: &[fdwatch::diagnose::Range],
    critical: &[fdwatch::diagnose::Range],
) -> anyhow::Result<()> {
    for (flag, given, fds, usage) in [
        ("-w", warning, &mut th.warn_fds, &mut th.warn_usage_range),
        ("-c", critical, &mut th.crit_fds, &mut th.crit_usage_range),
    ] {
        let (pct, count): (Vec<&fdwatch::diagnose::Range>, Vec<_>) =
            given.iter().partition(|r| r.percent);
        if pct.len() > 1 || count.len() > 1 {
            anyhow::bail!("{flag} takes one range on the fd count and one with % on the usage");
        }
        if let Some(r) = count.first() {
            *fds = Some(**r);
        }
        if let Some(r) = pct.first() {
            *usage = Some(**r);
        }
    }
    Ok(())
}

fn output(json: bool, plain: bool, screen: bool) -> Output {
    use std::io::IsTerminal;
    if screen {
        Output::Screen
    } else if json {
        Output::Json
    } else if plain || !std::io::stdout().is_terminal() {
        Output::Plain
    } else {
        Output::Screen
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let color = color(cli.color);
    match cli.command {
        Some(Command::Watch(args)) => run_watch(args, color),
        None if Targets::from(cli.watch.target.clone()).given() => run_watch(cli.watch, color),
        None => {
            eprintln!("fdwatch: nothing to do: give --pid N, or a mode such as `fdwatch demo` (see fdwatch --help)");
            Ok(EXIT_UNKNOWN)
        }
        Some(Command::Check(args)) => Ok(run_check(args)),
        Some(Command::Run(args)) => {
            let gate = gate(&args.gate)?;
            Ok(ci::run(
                &ProcRoot::default(),
                &args.command,
                args.interval,
                args.children,
                args.backend.choice(),
                &gate,
            )?
            .clamp(0, 255) as u8)
        }
        Some(Command::Assert(args)) => {
            let gate = gate(&args.gate)?;
            let root = ProcRoot::default();
            let pid = Targets::from(args.target).resolve_one(&root)?;
            Ok(ci::assert(
                &root,
                pid,
                args.watch_for,
                args.interval,
                args.backend.choice(),
                &gate,
            )?
            .clamp(0, 255) as u8)
        }
        Some(Command::Analyze(args)) => run_analyze(args),
        Some(Command::Stacks(args)) => stacks::run(&args),
        Some(Command::Top(args)) => {
            use std::io::IsTerminal;
            let output = if args.json {
                top::Output::Json
            } else if args.plain
                || !std::io::stdout().is_terminal()
                || !std::io::stdin().is_terminal()
            {
                top::Output::Plain
            } else {
                top::Output::Screen
            };
            top::run(
                ProcRoot::new(args.proc_root.clone()),
                top::TopOptions {
                    selector: selector(args.select)?,
                    interval: args.interval,
                    count: args.count,
                    sort: args.sort,
                    limit: args.limit,
                    output,
                    classify: args.classify,
                    thresholds: thresholds(&args.thresholds)?,
                    color,
                },
            )?;
            Ok(0)
        }
        Some(Command::Serve(args)) => {
            serve::run(
                ProcRoot::new(args.proc_root.clone()),
                serve::ServeOptions {
                    listen: args.listen,
                    selector: selector(args.select)?,
                    top: args.top,
                    interval: args.interval,
                    classify: args.classify,
                    thresholds: thresholds(&args.thresholds)?,
                    stacks: args.stacks,
                },
            )?;
            Ok(0)
        }
        Some(Command::Ls(args)) => {
            use std::io::IsTerminal;
            ls::run(
                &ProcRoot::default(),
                &ls::LsOptions {
                    targets: Targets::from(args.target.clone()),
                    kinds: ls::parse_kinds(&args.kind)?,
                    json: args.json,
                    backend: args.backend.choice(),
                    width: std::io::stdout()
                        .is_terminal()
                        .then(ls::terminal_width)
                        .flatten(),
                },
            )
        }
        Some(Command::Demo(args)) => {
            demo::run(demo::DemoOptions {
                rate: args.rate,
                soft_limit: args.soft_limit,
                interval: args.interval,
                output: output(args.json, args.plain, false),
                linger: args.linger,
                color,
            })?;
            Ok(0)
        }
        Some(Command::Completions(a)) => {
            completions::completions(a.shell, &mut std::io::stdout().lock())?;
            Ok(0)
        }
        Some(Command::Man(a)) => {
            let mut out = std::io::stdout().lock();
            if a.list {
                completions::list_pages(&mut out)?;
            } else {
                completions::man(a.command.as_deref(), &mut out)?;
            }
            Ok(0)
        }
        Some(Command::Workload(a)) => {
            workload::run(&workload::WorkloadSpec {
                soft_limit: a.soft_limit,
                hold: a.hold,
                leak: a.leak,
                churn: a.churn,
                sawtooth: a.sawtooth,
                threads: a.threads,
                late_threads: a.late_threads,
                late_after: a.late_after,
                start_after: a.start_after,
                churn_for: a.churn_for,
                exit_after: a.exit_after,
                ignore_stdin: a.ignore_stdin,
            })?;
            Ok(0)
        }
    }
}

fn syscall_mode(s: SyscallsArg) -> SyscallMode {
    match s {
        SyscallsArg::Auto => SyscallMode::Auto,
        SyscallsArg::On => SyscallMode::On,
        SyscallsArg::Off => SyscallMode::Off,
    }
}

fn run_analyze(args: AnalyzeArgs) -> anyhow::Result<u8> {
    use fdwatch::cli::InputFormat;
    use fdwatch::input::Format;
    analyze::run(analyze::AnalyzeOptions {
        files: args.files,
        format: match args.format {
            InputFormat::Auto => None,
            InputFormat::Jsonl => Some(Format::Jsonl),
            InputFormat::State => Some(Format::State),
            InputFormat::Csv => Some(Format::Csv),
            InputFormat::Prometheus => Some(Format::Prometheus),
        },
        json: args.json,
        plot: args.plot,
        thresholds: thresholds(&args.thresholds)?,
    })
}

fn selector(s: SelectArgs) -> anyhow::Result<fdwatch::host::Selector> {
    top::selector(
        s.user.as_deref(),
        s.name,
        s.exe,
        s.cgroup,
        s.container,
        s.pid,
        s.pidfile,
    )
}

fn census(c: CensusArg) -> Census {
    match c {
        CensusArg::Full => Census::Full,
        CensusArg::Count => Census::CountOnly,
    }
}

fn gate(g: &GateArgs) -> anyhow::Result<ci::Gate> {
    Ok(ci::Gate {
        max_fds: g.max_fds,
        max_growth: g
            .max_growth
            .iter()
            .map(|s| ci::parse_growth(s))
            .collect::<anyhow::Result<_>>()?,
        warmup: g.warmup,
        fail_on: match g.fail_on {
            FailOn::Never => None,
            FailOn::Warning => Some(fdwatch::diagnose::Level::Warning),
            FailOn::Critical => Some(fdwatch::diagnose::Level::Critical),
        },
        report: g.report.clone(),
        junit: g.junit.clone(),
        plot: g.plot.clone(),
        stacks: g.stacks,
        thresholds: thresholds(&g.thresholds)?,
    })
}

/// A check always answers in its format, errors included: UNKNOWN (3)
/// with the reason (to `--output` when given), and the same line on stderr.
fn run_check(args: CheckArgs) -> u8 {
    let format = match args.format {
        CheckFormat::Nagios => check::Format::Nagios,
        CheckFormat::Json => check::Format::Json,
        CheckFormat::Prometheus => check::Format::Prometheus,
    };
    let targets = Targets::from(args.target);
    let th = thresholds(&args.thresholds).and_then(|mut th| {
        plugin_ranges(&mut th, &args.warning, &args.critical)?;
        Ok(th)
    });
    let th = match th {
        Ok(th) => th,
        Err(e) => return check::unknown(&e, format, args.output.as_deref(), &targets.describe()),
    };
    let opts = check::CheckOptions {
        targets,
        samples: args.samples,
        interval: args.interval,
        state: args.state,
        format,
        output: args.output,
        timeout: args.timeout,
        thresholds: th,
        census: census(args.census),
        syscalls: syscall_mode(args.syscalls),
        stacks: args.stacks,
        backend: args.backend.choice(),
        verbose: args.verbose,
    };
    check::run(&ProcRoot::default(), &opts)
}

/// `--color` with the environment (NO_COLOR, CLICOLOR_FORCE) and whether
/// stdout is a terminal: decided once, for every command.
fn color(c: fdwatch::cli::ColorArg) -> bool {
    use fdwatch::cli::ColorArg;
    use fdwatch::report::style::{color_enabled, ColorChoice};
    use std::io::IsTerminal;
    let choice = match c {
        ColorArg::Auto => ColorChoice::Auto,
        ColorArg::Always => ColorChoice::Always,
        ColorArg::Never => ColorChoice::Never,
    };
    color_enabled(choice, std::io::stdout().is_terminal(), |k| {
        std::env::var_os(k).map(|v| v.to_string_lossy().into_owned())
    })
}

fn run_watch(args: WatchArgs, color: bool) -> anyhow::Result<u8> {
    if args.syscalls == SyscallsArg::On && args.pace.count == Some(1) {
        anyhow::bail!("--syscalls on needs --count 2 or more: one sample counts nothing");
    }
    let root = ProcRoot::default();
    let pid = Targets::from(args.target.clone()).resolve_one(&root)?;
    watch::run(
        &root,
        WatchOptions {
            pid,
            interval: args.pace.interval,
            count: args.pace.count,
            duration: args.pace.duration,
            output: output(args.json, args.plain, args.screen),
            record: args.record,
            plot: args.plot,
            census: census(args.census),
            backend: args.backend.choice(),
            thresholds: thresholds(&args.thresholds)?,
            syscalls: syscall_mode(args.syscalls),
            stacks: args.stacks,
            color,
            until: None,
        },
    )?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::{edit_distance, usage_error_line};

    #[test]
    fn edit_distance_counts_a_swap_as_one() {
        for (a, b, d) in [
            ("pid", "pdi", 1),
            ("pid", "pd", 1),
            ("pid", "pids", 1),
            ("pid", "pit", 1),
            ("samples", "sample", 1),
            ("pid", "pid", 0),
            ("pid", "json", 4),
            ("", "pid", 3),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
        }
    }

    #[test]
    fn usage_error_line_keeps_everything_but_usage() {
        let rendered = "error: the following required arguments were not provided:\n  \
                        --record <FILE>\n\nUsage: fdwatch watch --record <FILE> --plot <FILE.svg>\n\n\
                        For more information, try '--help'.\n";
        assert_eq!(
            usage_error_line(rendered),
            "the following required arguments were not provided: --record <FILE>"
        );
        let rendered = "error: unexpected argument '--pdi' found\n\n  \
                        tip: a similar argument exists: '--pid'\n\nUsage: fdwatch [OPTIONS]\n";
        assert_eq!(
            usage_error_line(rendered),
            "unexpected argument '--pdi' found; tip: a similar argument exists: '--pid'"
        );
        assert_eq!(usage_error_line(""), "invalid arguments");
    }
}
