//! `fdwatch ls`: every open fd of the selected processes, one row each.
//! Parses the options, lists through the chosen backend (the BPF listing
//! where allowed with `auto`, else /proc), prints through `report::ls`.

use anyhow::{bail, Context};

use super::print_line;
use super::targets::Targets;
use crate::report::ls as report;
use crate::sample::bpf::list::BpfLister;
use crate::sample::bpf::Choice;
use crate::sample::listing::{self, FdEntry, Listing};
use crate::sample::{FdKind, ProcRoot, SampleError};

#[derive(Debug, Clone)]
pub struct LsOptions {
    pub targets: Targets,
    /// Kinds to show; empty: every fd.
    pub kinds: Vec<FdKind>,
    pub json: bool,
    pub backend: Choice,
    /// Terminal width (None off a terminal: rows are never cut).
    pub width: Option<usize>,
}

/// `--kind` names to kinds: the census's names, and `socket` for all sockets.
pub fn parse_kinds(names: &[String]) -> anyhow::Result<Vec<FdKind>> {
    let mut out = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if n == "socket" {
            out.extend(FdKind::ALL.into_iter().filter(|k| k.is_socket()));
            continue;
        }
        match FdKind::from_name(n) {
            Some(k) => out.push(k),
            None => bail!(
                "--kind {}: not a kind; one of socket, {}",
                report::escape(n),
                FdKind::ALL.map(FdKind::name).join(", ")
            ),
        }
    }
    Ok(out)
}

/// Columns of the terminal on stdout, when it says.
pub fn terminal_width() -> Option<usize> {
    // SAFETY: an all-zero winsize is valid; TIOCGWINSZ fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize we own.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// List and print every selected process. Exit code 0; errors (no such
/// process, permission denied) are returned for `main` to map to UNKNOWN.
pub fn run(root: &ProcRoot, opts: &LsOptions) -> anyhow::Result<u8> {
    let pids = opts.targets.resolve(root)?;
    let mut bpf = match opts.backend {
        Choice::Proc => None,
        Choice::Bpf => Some(BpfLister::load().context("--backend bpf")?),
        // Where BPF is not allowed the /proc listing says the same; the
        // title and the JSON name the backend that listed.
        Choice::Auto => BpfLister::load().ok(),
    };
    let keep = |e: &FdEntry| opts.kinds.is_empty() || opts.kinds.contains(&e.kind);
    let several = pids.len() > 1;
    for (i, pid) in pids.iter().enumerate() {
        let listing = match list(root, *pid, bpf.as_mut(), opts.backend) {
            Ok(l) => l,
            // A process matched by name may exit before its turn.
            Err(e) if several && e.target_gone() => continue,
            Err(e) => return Err(e).with_context(|| format!("listing the fds of pid {pid}")),
        };
        let mut lines = Vec::new();
        if opts.json {
            lines.push(report::json(&listing, &keep));
        } else {
            if i > 0 {
                lines.push(String::new());
            }
            let shown = Listing {
                fds: listing.fds.iter().filter(|e| keep(e)).cloned().collect(),
                ..listing.clone()
            };
            lines.push(report::title(&listing, shown.fds.len()));
            lines.extend(report::table(&shown, opts.width));
        }
        for line in lines {
            if !print_line(&line)? {
                return Ok(0);
            }
        }
    }
    Ok(0)
}

fn list(
    root: &ProcRoot,
    pid: i32,
    bpf: Option<&mut BpfLister>,
    choice: Choice,
) -> Result<Listing, SampleError> {
    match bpf {
        Some(b) => match b.list(root, pid) {
            // The kernel walk saw nothing where /proc sees fds: /proc says
            // what it can (or why it cannot), unless BPF was insisted on.
            Err(SampleError::BpfBlind { .. }) if choice == Choice::Auto => {
                listing::list_proc(root, pid)
            }
            other => other,
        },
        None => listing::list_proc(root, pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names() {
        let k = parse_kinds(&["tcp".into(), " udp6 ".into()]).unwrap();
        assert_eq!(k, vec![FdKind::Tcp, FdKind::Udp6]);
        let sockets = parse_kinds(&["socket".into()]).unwrap();
        assert!(sockets.contains(&FdKind::Netlink) && !sockets.contains(&FdKind::Pipe));
        let err = parse_kinds(&["tpc\x1b".into()]).unwrap_err().to_string();
        assert!(err.contains("tpc\\x1b") && err.contains("netlink"), "{err}");
    }
}
