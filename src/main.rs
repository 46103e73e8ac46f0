//! The `fdwatch` binary: parse, dispatch, map every outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use fdwatch::cli::{CensusArg, Cli, Command, ThresholdArgs, WatchArgs};
use fdwatch::cmd::watch::{Output, WatchOptions};
use fdwatch::cmd::{demo, watch};
use fdwatch::diagnose::Thresholds;
use fdwatch::sample::{Census, ProcRoot, SampleError};
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
            ExitCode::from(exit_code_of(&err))
        }
    }
}

fn exit_code_of(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<SampleError>() {
        Some(_) => EXIT_UNKNOWN,
        None => EXIT_UNKNOWN,
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
                threads: a.threads,
                late_threads: a.late_threads,
                late_after: a.late_after,
                start_after: a.start_after,
                churn_for: a.churn_for,
                exit_after: a.exit_after,
            })?;
            Ok(0)
        }
    }
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
            census: match args.census {
                CensusArg::Full => Census::Full,
                CensusArg::Count => Census::CountOnly,
            },
            thresholds: thresholds(&args.thresholds)?,
            until: None,
        },
    )?;
    Ok(0)
}
