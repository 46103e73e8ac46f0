//! Shell completions and man pages, generated from the clap definitions in
//! `cli` so that they never drift from `--help`, written to stdout (packagers
//! redirect them; scripts/dist.sh fills a dist directory). This module adds no
//! wording of its own and writes no files.

use std::io::Write;

use anyhow::bail;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The completion script for `shell`. It is rendered into memory first:
/// clap_complete panics on a failed write, and a closed pipe is an error to
/// return, not a panic.
pub fn completions(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "fdwatch", &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// The command tree as the pages see it: built (so a subcommand's name is
/// `fdwatch-check`), without the `help` subcommand, hidden commands left out.
fn pages() -> Vec<clap::Command> {
    fn walk(cmd: &clap::Command, into: &mut Vec<clap::Command>) {
        into.push(cmd.clone());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, into);
        }
    }
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut all = Vec::new();
    walk(&root, &mut all);
    all
}

fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string()
}

/// The page names, one per line: `fdwatch`, `fdwatch-watch`, ...
pub fn list_pages(out: &mut dyn Write) -> std::io::Result<()> {
    for cmd in pages() {
        writeln!(out, "{}", page_name(&cmd))?;
    }
    out.flush()
}

/// fdwatch(1), or with `command` (`check`) that command's page
/// (fdwatch-check(1)), as roff.
pub fn man(command: Option<&str>, out: &mut dyn Write) -> anyhow::Result<()> {
    let want = match command {
        None => "fdwatch".to_string(),
        Some(c) => format!("fdwatch-{c}"),
    };
    let all = pages();
    let Some(cmd) = all.iter().find(|c| page_name(c) == want) else {
        let names: Vec<String> = all
            .iter()
            .skip(1)
            .map(|c| c.get_name().to_string())
            .collect();
        bail!(
            "no man page for {:?}: the commands are {}",
            command.unwrap_or_default(),
            names.join(", ")
        );
    };
    let mut page = Vec::new();
    // A subcommand has no version of its own: every page's footer names
    // the program's.
    clap_mangen::Man::new(cmd.clone())
        .source(format!("fdwatch {}", env!("CARGO_PKG_VERSION")))
        .render(&mut page)?;
    out.write_all(&page)?;
    out.flush()?;
    Ok(())
}
