//! The `fdwatch` binary: parse, dispatch, map every outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use fdwatch::cli::{
    AnalyzeArgs, CensusArg, CheckArgs, CheckFormat, Cli, Command, FailOn, GateArgs, SelectArgs,
    SyscallsArg, ThresholdArgs, WatchArgs,
};
use fdwatch::cmd::watch::{Output, SyscallMode, WatchOptions};
use fdwatch::cmd::{analyze, check, ci, demo, serve, targets::Targets, top, watch};
use fdwatch::diagnose::Thresholds;
use fdwatch::sample::{Census, ProcRoot};
use fdwatch::workload;

/// Exit codes (README): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
const EXIT_UNKNOWN: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line, and usage errors are UNKNOWN (3), never clap's 2.
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("fdwatch: {first} (see fdwatch --help)");
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
            eprintln!("fdwatch: {err:#}");
            // Every error that reaches here means "could not determine the state".
            ExitCode::from(EXIT_UNKNOWN)
        }
    }
}

fn thresholds(t: &ThresholdArgs) -> anyhow::Result<Thresholds> {
    if t.warn_usage > t.crit_usage {
        anyhow::bail!(
            "--warn-usage ({:.0}%) must not exceed --crit-usage ({:.0}%)",
            t.warn_usage * 100.0,
            t.crit_usage * 100.0
        );
    }
    if t.warn_eta < t.crit_eta {
        anyhow::bail!("--warn-eta must not be shorter than --crit-eta");
    }
    Ok(Thresholds {
        warn_usage: t.warn_usage,
        crit_usage: t.crit_usage,
        warn_eta: t.warn_eta.as_secs_f64(),
        crit_eta: t.crit_eta.as_secs_f64(),
    })
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
    match cli.command {
        Some(Command::Watch(args)) => run_watch(args),
        None if cli.watch.pid.is_some() => run_watch(cli.watch),
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
            Ok(ci::assert(
                &ProcRoot::default(),
                args.pid,
                args.watch_for,
                args.interval,
                args.backend.choice(),
                &gate,
            )?
            .clamp(0, 255) as u8)
        }
        Some(Command::Analyze(args)) => run_analyze(args),
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
                },
            )?;
            Ok(0)
        }
        Some(Command::Demo(args)) => {
            demo::run(demo::DemoOptions {
                rate: args.rate,
                soft_limit: args.soft_limit,
                interval: args.interval,
                output: output(args.json, args.plain, false),
                linger: args.linger,
            })?;
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
        thresholds: thresholds(&g.thresholds)?,
    })
}

/// A check always answers in the plugin format, errors included: UNKNOWN (3)
/// with the reason on the status line, and the same line on stderr.
fn run_check(args: CheckArgs) -> u8 {
    let opts = match thresholds(&args.thresholds) {
        Ok(th) => check::CheckOptions {
            targets: Targets {
                pid: args.target.pid,
                pidfile: args.target.pidfile,
                name: args.target.name,
                exe: args.target.exe,
            },
            samples: args.samples,
            interval: args.interval,
            state: args.state,
            format: match args.format {
                CheckFormat::Nagios => check::Format::Nagios,
                CheckFormat::Json => check::Format::Json,
                CheckFormat::Prometheus => check::Format::Prometheus,
            },
            output: args.output,
            timeout: args.timeout,
            thresholds: th,
            census: census(args.census),
            syscalls: syscall_mode(args.syscalls),
            backend: args.backend.choice(),
        },
        Err(e) => return unknown(&e, args.format),
    };
    match check::run(&ProcRoot::default(), &opts) {
        Ok(code) => code,
        Err(e) => unknown(&e, args.format),
    }
}

fn unknown(e: &anyhow::Error, format: CheckFormat) -> u8 {
    let msg = format!("{e:#}");
    match format {
        CheckFormat::Json => println!("{}", serde_json::json!({"level": "UNKNOWN", "error": msg})),
        _ => println!("FDWATCH UNKNOWN - {}", msg.replace('|', "/")),
    }
    eprintln!("fdwatch: {msg}");
    EXIT_UNKNOWN
}

fn run_watch(args: WatchArgs) -> anyhow::Result<u8> {
    let pid = args
        .pid
        .ok_or_else(|| anyhow::anyhow!("watch needs --pid N"))?;
    if pid <= 0 {
        anyhow::bail!("--pid must be a positive process id, got {pid}");
    }
    watch::run(
        &ProcRoot::default(),
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
            until: None,
        },
    )?;
    Ok(0)
}
