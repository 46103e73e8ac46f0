//! The words of `fdwatch stacks`: the text report, the JSON document and
//! folded stacks for flame-graph tools, from a `stacks::Snapshot`.
//!
//! Function and file names come from the traced program's binaries:
//! outside text, so control characters are escaped in the text report,
//! and `;`, spaces and newlines replaced in folded lines.

use std::fmt::Write as _;
use std::time::Duration;

use crate::stacks::{is_system_module, Frame, Site, Snapshot, StackEnd};

/// Frames shown per site in the text report.
const FRAMES_SHOWN: usize = 12;

/// The line printed on stderr once the tracer is attached.
pub fn attached_line(pid: i32, trace_for: Duration) -> String {
    format!(
        "fdwatch: tracing the fds pid {pid} opens for {} (Ctrl-C reports now)",
        humantime::format_duration(trace_for)
    )
}

/// Outside text on one line: control characters as `\u{..}`.
fn clean(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// How a site's stack ends, in words, or None when nothing is missing.
pub fn end_note(site: &Site) -> Option<String> {
    match &site.end {
        StackEnd::Complete => None,
        StackEnd::Deep { frames } => Some(format!("stack cut at {frames} frames")),
        StackEnd::Early { module } => {
            let module = module.as_deref();
            if site.app_frame.is_some() {
                // The application's frame is there; only its callers are
                // missing.
                Some(format!(
                    "stack ends early in {}: its callers were built without frame pointers",
                    module.map_or("unknown code".into(), |m| clean(base(m)))
                ))
            } else if module.is_some_and(|m| base(m).starts_with("libc")) {
                Some("stack ends in libc: built without frame pointers".into())
            } else if let Some(m) = module.filter(|m| is_system_module(m)) {
                Some(format!(
                    "stack ends in {}: built without frame pointers",
                    clean(base(m))
                ))
            } else {
                Some(format!(
                    "stack ends early{}: built without frame pointers",
                    module.map_or(String::new(), |m| format!(" in {}", clean(base(m))))
                ))
            }
        }
    }
}

/// glibc's internal aliases under their public names (`__GI_socket` is
/// `socket`, `__libc_open64` is `open64`): what the application called.
pub fn public_name(name: &str) -> &str {
    for p in ["__GI___", "__GI_", "__libc_"] {
        if let Some(rest) = name.strip_prefix(p) {
            if !rest.is_empty() {
                return rest;
            }
        }
    }
    name
}

/// `leak_here (via socket)`, or for a stack with no application frame,
/// its innermost function and that no caller is known.
pub fn site_title(site: &Site) -> String {
    match (&site.function, &site.via) {
        (Some(f), Some(v)) => format!("{} (via {})", clean(f), clean(public_name(v))),
        (Some(f), None) => clean(f),
        (None, _) => {
            let inner = site
                .frames
                .first()
                .and_then(|f| f.name.as_deref())
                .map_or("an unnamed function".to_string(), |n| clean(public_name(n)));
            format!("{inner}, called from code fdwatch cannot name")
        }
    }
}

fn frame_text(f: &Frame) -> String {
    let name = f
        .name
        .as_deref()
        .map_or_else(|| format!("0x{:x}", f.addr), clean);
    let place = match (&f.file, f.line, &f.module) {
        (Some(file), Some(line), _) => format!("{}:{line}", clean(base(file))),
        (_, _, Some(m)) => clean(base(m)),
        _ => String::new(),
    };
    let inl = if f.inlined { " (inlined)" } else { "" };
    if place.is_empty() {
        format!("{name}{inl}")
    } else {
        format!("{name}{inl}  {place}")
    }
}

fn kinds_text(site: &Site) -> String {
    let mut k: Vec<(&String, &u64)> = site.kinds.iter().collect();
    k.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    k.iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn write_frames(out: &mut String, site: &Site) {
    for (i, f) in site.frames.iter().take(FRAMES_SHOWN).enumerate() {
        let mark = if Some(i) == site.app_frame { '>' } else { ' ' };
        let _ = writeln!(out, "     {mark} {}", frame_text(f));
    }
    if site.frames.len() > FRAMES_SHOWN {
        let _ = writeln!(out, "       ... {} more", site.frames.len() - FRAMES_SHOWN);
    }
    if let Some(note) = end_note(site) {
        let _ = writeln!(out, "       ({note})");
    }
}

/// The text report: the top `top` leak and churn sites with their stacks.
pub fn text(s: &Snapshot, top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fdwatch stacks: pid {}, traced {:.1} s{}: {} fds opened, {} closed again",
        s.pid,
        s.seconds,
        if s.exited {
            " (the process exited)"
        } else {
            ""
        },
        s.stats.opens,
        s.stats.closes
    );
    let _ = writeln!(out);
    if s.exited {
        let _ = writeln!(
            out,
            "Leak sites (fds opened since attach and still open when last seen before the exit):"
        );
    } else {
        let _ = writeln!(out, "Leak sites (fds opened since attach and still open):");
    }
    if s.leaks.is_empty() {
        let _ = writeln!(out, "  none: every fd opened since attach was closed again");
    }
    for (i, site) in s.leaks.iter().take(top).enumerate() {
        let _ = writeln!(
            out,
            "  {}. {}: {} open ({}); oldest {:.1} s, newest {:.1} s; opened {}, closed {}",
            i + 1,
            site_title(site),
            site.open,
            kinds_text(site),
            site.oldest_s,
            site.newest_s,
            site.opens,
            site.closes
        );
        write_frames(&mut out, site);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Churn sites (fds opened per second since attach):");
    if s.churn.is_empty() {
        let _ = writeln!(out, "  none: no fd was opened since attach");
    }
    for (i, site) in s.churn.iter().take(top).enumerate() {
        let _ = writeln!(
            out,
            "  {}. {}: {:.1}/s ({} opened: {}), {:.1} % closed again",
            i + 1,
            site_title(site),
            site.opens_per_s,
            site.opens,
            kinds_text(site),
            100.0 * site.closed_share()
        );
        write_frames(&mut out, site);
    }
    let notes = notes(s);
    if !notes.is_empty() {
        let _ = writeln!(out);
        for n in notes {
            let _ = writeln!(out, "note: {n}");
        }
    }
    out
}

/// What the tracer could not do, in words (empty when nothing was lost).
pub fn notes(s: &Snapshot) -> Vec<String> {
    let st = &s.stats;
    let mut n = Vec::new();
    if st.fds_dropped > 0 {
        n.push(format!(
            "{} fds were not remembered (the tracer's fd table of {} is full): leak sites undercount",
            st.fds_dropped,
            crate::stacks::bpf::MAX_FDS
        ));
    }
    if st.stacks_dropped > 0 {
        n.push(format!(
            "{} opens have no stack (the tracer's stack table of {} distinct stacks is full)",
            st.stacks_dropped,
            crate::stacks::bpf::MAX_STACKS
        ));
    }
    if st.sites_dropped > 0 {
        n.push(format!(
            "{} opens were not counted by stack (the site table is full): churn sites undercount",
            st.sites_dropped
        ));
    }
    if st.stack_errors > 0 {
        n.push(format!(
            "{} opens have no user stack (the kernel could not take it)",
            st.stack_errors
        ));
    }
    if s.unrecorded > 0 {
        n.push(format!(
            "{} still-open fds have no recorded stack",
            s.unrecorded
        ));
    }
    if s.stale > 0 {
        n.push(format!(
            "{} fds were closed by a path the tracer does not see (close-on-exec, io_uring)",
            s.stale
        ));
    }
    n
}

#[derive(serde::Serialize)]
struct JsonSite<'a> {
    title: String,
    #[serde(flatten)]
    site: &'a Site,
    closed_share: f64,
    note: Option<String>,
}

#[derive(serde::Serialize)]
struct JsonReport<'a> {
    pid: i32,
    seconds: f64,
    exited: bool,
    stats: &'a crate::stacks::Stats,
    stale: u64,
    unrecorded: u64,
    leaks: Vec<JsonSite<'a>>,
    churn: Vec<JsonSite<'a>>,
    notes: Vec<String>,
}

/// One JSON document (docs/stacks.md).
pub fn json(s: &Snapshot, top: usize) -> String {
    fn wrap(site: &Site) -> JsonSite<'_> {
        JsonSite {
            title: site_title(site),
            site,
            closed_share: site.closed_share(),
            note: end_note(site),
        }
    }
    let doc = JsonReport {
        pid: s.pid,
        seconds: s.seconds,
        exited: s.exited,
        stats: &s.stats,
        stale: s.stale,
        unrecorded: s.unrecorded,
        leaks: s.leaks.iter().take(top).map(wrap).collect(),
        churn: s.churn.iter().take(top).map(wrap).collect(),
        notes: notes(s),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn folded_frame(f: &Frame) -> String {
    let name = f.name.clone().unwrap_or_else(|| format!("0x{:x}", f.addr));
    name.chars()
        .map(|c| {
            if c == ';' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Folded stacks (outermost frame first, `;`-separated, then a count): one
/// line per site of still-open fds (`still-open;...`) and of all opens
/// since attach (`opened;...`).
pub fn folded(s: &Snapshot) -> String {
    let mut out = String::new();
    for (root, sites, count) in [
        (
            "still-open",
            &s.leaks,
            (|x: &Site| x.open) as fn(&Site) -> u64,
        ),
        ("opened", &s.churn, |x: &Site| x.opens),
    ] {
        for site in sites.iter() {
            let n = count(site);
            if n == 0 {
                continue;
            }
            let path: Vec<String> = site.frames.iter().rev().map(folded_frame).collect();
            let _ = writeln!(out, "{root};{} {n}", path.join(";"));
        }
    }
    out
}

// ---- `--stacks` on the other modes (watch, check, run, assert, serve) ----

/// Sites shown per list on the live screen and in long texts.
pub const SITES_SHOWN: usize = 3;

/// A site's short name for a key or a label: its application function,
/// else its title (which says no caller is known).
pub fn site_name(site: &Site) -> String {
    site.function.clone().unwrap_or_else(|| site_title(site))
}

/// `leaky.c:23` of the application frame, where debug info has it.
fn place(site: &Site) -> Option<String> {
    let f = site.frames.get(site.app_frame?)?;
    Some(format!("{}:{}", clean(base(f.file.as_deref()?)), f.line?))
}

/// The leak sites that hold fds now (a site whose fds were all closed
/// again is churn, not a leak).
fn holding(s: &Snapshot) -> impl Iterator<Item = &Site> {
    s.leaks.iter().filter(|x| x.open > 0)
}

fn leak_line(site: &Site) -> String {
    let mut l = format!(
        "{}: {} open ({}), oldest {:.0} s",
        site_title(site),
        site.open,
        kinds_text(site),
        site.oldest_s
    );
    if let Some(p) = place(site) {
        let _ = write!(l, "  {p}");
    }
    if let Some(n) = end_note(site) {
        let _ = write!(l, " ({n})");
    }
    l
}

fn churn_line(site: &Site) -> String {
    let mut l = format!(
        "{}: {:.1}/s ({} opened, {:.1} % closed again)",
        site_title(site),
        site.opens_per_s,
        site.opens,
        100.0 * site.closed_share()
    );
    if let Some(p) = place(site) {
        let _ = write!(l, "  {p}");
    }
    if let Some(n) = end_note(site) {
        let _ = write!(l, " ({n})");
    }
    l
}

/// The lines of the sites for a screen or a long text: a heading, then
/// up to `n` leak sites and `n` churn sites, one line each. The caller
/// indents and fits them.
pub fn site_lines(s: &Snapshot, n: usize) -> Vec<String> {
    let mut out = vec![format!(
        "stack sites (traced {:.0} s{}: {} fds opened, {} closed again):",
        s.seconds,
        if s.exited { ", the process exited" } else { "" },
        s.stats.opens,
        s.stats.closes
    )];
    let leaks: Vec<&Site> = holding(s).take(n).collect();
    if leaks.is_empty() && s.stats.opens == 0 {
        out.push("  leak: none (no fd opened since attach)".into());
    } else if leaks.is_empty() {
        out.push("  leak: none (every fd opened since attach was closed again)".into());
    }
    for site in leaks {
        out.push(format!("  leak: {}", leak_line(site)));
    }
    for site in s.churn.iter().take(n) {
        out.push(format!("  churn: {}", churn_line(site)));
    }
    for note in notes(s) {
        out.push(format!("  note: {note}"));
    }
    out
}

/// logfmt keys for a plain line: the top leak site (`leak_site`,
/// `leak_site_fds`) and the top churn site (`churn_site`,
/// `churn_site_per_s`), each only when there is one. Starts with a blank.
pub fn logfmt_keys(s: &Snapshot) -> String {
    let mut out = String::new();
    if let Some(site) = holding(s).next() {
        let _ = write!(
            out,
            " leak_site={} leak_site_fds={}",
            super::escape::logfmt(&site_name(site)),
            site.open
        );
    }
    if let Some(site) = s.churn.first() {
        let _ = write!(
            out,
            " churn_site={} churn_site_per_s={:.1}",
            super::escape::logfmt(&site_name(site)),
            site.opens_per_s
        );
    }
    out
}

/// The Prometheus series of a snapshot, by site name: the leak sites'
/// open fds and the churn sites' opens per second. A name is given once
/// (the biggest site of that name): label sets stay unique.
#[allow(clippy::type_complexity)]
pub fn series(s: &Snapshot) -> (Vec<(String, f64)>, Vec<(String, f64)>) {
    fn unique<'a>(
        sites: impl Iterator<Item = &'a Site>,
        value: fn(&Site) -> f64,
    ) -> Vec<(String, f64)> {
        let mut seen = std::collections::HashSet::new();
        sites
            .filter_map(|x| {
                let name = site_name(x);
                seen.insert(name.clone()).then(|| (name, value(x)))
            })
            .collect()
    }
    (
        unique(holding(s), |x| x.open as f64),
        unique(s.churn.iter(), |x| x.opens_per_s),
    )
}

/// One site in the JSON of the other modes (docs/json-schema.md): no
/// frames (the `stacks` report has them), the application frame's place.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BriefSite {
    pub title: String,
    pub function: Option<String>,
    pub via: Option<String>,
    /// `file:line` of the application frame, where debug info has it.
    pub place: Option<String>,
    pub open: u64,
    pub kinds: std::collections::BTreeMap<String, u64>,
    pub opens: u64,
    pub opens_per_s: f64,
    pub closed_share: f64,
    pub note: Option<String>,
}

/// The sites in the JSON of watch (`stacks`), check, run and assert.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Brief {
    pub seconds: f64,
    pub exited: bool,
    pub opens: u64,
    pub closes: u64,
    pub leaks: Vec<BriefSite>,
    pub churn: Vec<BriefSite>,
    pub notes: Vec<String>,
}

pub fn brief(s: &Snapshot) -> Brief {
    let one = |site: &Site| BriefSite {
        title: site_title(site),
        function: site.function.clone(),
        via: site.via.clone(),
        place: place(site),
        open: site.open,
        kinds: site.kinds.clone(),
        opens: site.opens,
        opens_per_s: site.opens_per_s,
        closed_share: site.closed_share(),
        note: end_note(site),
    };
    Brief {
        seconds: s.seconds,
        exited: s.exited,
        opens: s.stats.opens,
        closes: s.stats.closes,
        leaks: holding(s).map(one).collect(),
        churn: s.churn.iter().map(one).collect(),
        notes: notes(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stacks::Stats;

    fn frame(name: &str, module: &str) -> Frame {
        Frame {
            addr: 0x10,
            name: Some(name.into()),
            module: Some(module.into()),
            ..Frame::default()
        }
    }

    fn site(frames: Vec<Frame>, app: Option<usize>, end: StackEnd) -> Site {
        Site {
            function: app.and_then(|i| frames[i].name.clone()),
            via: app
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| frames[i].name.clone()),
            frames,
            app_frame: app,
            end,
            open: 3,
            kinds: [("udp".to_string(), 3)].into(),
            oldest_s: 2.0,
            newest_s: 1.0,
            opens: 4,
            closes: 1,
            opens_per_s: 0.5,
        }
    }

    #[test]
    fn titles_and_notes_never_name_an_unchecked_caller() {
        let libc = "/lib/x86_64-linux-gnu/libc.so.6";
        let only_libc = site(
            vec![frame("__libc_open64", libc), frame("_IO_file_open", libc)],
            None,
            StackEnd::Early {
                module: Some(libc.into()),
            },
        );
        assert_eq!(
            end_note(&only_libc).as_deref(),
            Some("stack ends in libc: built without frame pointers")
        );
        assert_eq!(
            site_title(&only_libc),
            "open64, called from code fdwatch cannot name"
        );
        let app = site(
            vec![frame("__GI_socket", libc), frame("leak_here", "/t/leaky")],
            Some(1),
            StackEnd::Early {
                module: Some("/t/leaky".into()),
            },
        );
        assert_eq!(site_title(&app), "leak_here (via socket)");
        assert_eq!(
            end_note(&app).as_deref(),
            Some("stack ends early in leaky: its callers were built without frame pointers")
        );
        let complete = site(
            vec![frame("x\u{1b}[2J", "/t/a")],
            Some(0),
            StackEnd::Complete,
        );
        assert_eq!(end_note(&complete), None);
        assert_eq!(
            site_title(&complete),
            "x\\u{1b}[2J",
            "control characters escaped"
        );
    }

    #[test]
    fn folded_lines_are_outermost_first_with_counts() {
        let s = site(
            vec![
                frame("socket", "/l/libc.so.6"),
                frame("leak here;x", "/t/a"),
                frame("main", "/t/a"),
            ],
            Some(1),
            StackEnd::Complete,
        );
        let snap = Snapshot {
            pid: 1,
            seconds: 1.0,
            exited: false,
            leaks: vec![s.clone()],
            churn: vec![s],
            stats: Stats::default(),
            stale: 0,
            unrecorded: 0,
        };
        assert_eq!(
            folded(&snap),
            "still-open;main;leak_here_x;socket 3\nopened;main;leak_here_x;socket 4\n"
        );
        let text = text(&snap, 5);
        assert!(text.contains("  1. leak here;x (via socket): 3 open (udp 3); oldest 2.0 s, newest 1.0 s; opened 4, closed 1"), "{text}");
        assert!(text.contains("     > leak here;x  a"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&json(&snap, 5)).unwrap();
        assert_eq!(json["leaks"][0]["closed_share"], 0.25);
        assert_eq!(json["leaks"][0]["end"]["kind"], "complete");
    }

    #[test]
    fn other_modes_keys_lines_and_series() {
        let libc = "/lib/x86_64-linux-gnu/libc.so.6";
        let mut leak = site(
            vec![frame("__GI_socket", libc), frame("leak here\"=", "/t/a")],
            Some(1),
            StackEnd::Complete,
        );
        leak.frames[1].file = Some("/src/a.c".into());
        leak.frames[1].line = Some(23);
        let mut closed = leak.clone();
        closed.open = 0;
        let mut unnamed = site(
            vec![frame("open64", libc)],
            None,
            StackEnd::Early { module: None },
        );
        unnamed.opens_per_s = 2.0;
        let mut snap = Snapshot {
            pid: 1,
            seconds: 4.0,
            exited: false,
            leaks: vec![closed.clone(), leak.clone()],
            churn: vec![leak.clone(), unnamed.clone(), unnamed.clone()],
            stats: Stats {
                opens: 9,
                closes: 2,
                ..Stats::default()
            },
            stale: 0,
            unrecorded: 0,
        };
        // A site that holds nothing is no leak site, in any output.
        assert_eq!(
            logfmt_keys(&snap),
            " leak_site=\"leak here\\\"=\" leak_site_fds=3 churn_site=\"leak here\\\"=\" churn_site_per_s=0.5"
        );
        let lines = site_lines(&snap, 3);
        assert_eq!(
            lines[1],
            "  leak: leak here\"= (via socket): 3 open (udp 3), oldest 2 s  a.c:23"
        );
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(
            lines[4].starts_with("  churn: open64, called from code fdwatch cannot name: 2.0/s")
        );
        // One series per distinct site name: label sets stay unique.
        let (leaks, churn) = series(&snap);
        assert_eq!(leaks, vec![("leak here\"=".to_string(), 3.0)]);
        assert_eq!(churn.len(), 2, "{churn:?}");
        let b = brief(&snap);
        assert_eq!(b.leaks.len(), 1);
        assert_eq!(b.leaks[0].place.as_deref(), Some("a.c:23"));
        snap.leaks.clear();
        snap.churn.clear();
        assert_eq!(logfmt_keys(&snap), "");
        assert_eq!(
            site_lines(&snap, 3)[1],
            "  leak: none (every fd opened since attach was closed again)"
        );
    }
}
