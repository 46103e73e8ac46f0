//! The one parser of `/proc/<pid>/stat`: identity (comm, start time),
//! state, parent and flags. Pure text in, plain data out; the readers
//! (`ProcRoot::identity`, the host scan, the syscall counter) only read.

/// What one read of `/proc/<pid>/stat` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatLine {
    pub comm: String,
    /// Field 3: `R`, `S`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Field 4.
    pub ppid: i32,
    /// Field 9.
    pub flags: u32,
    /// Field 22, clock ticks after boot: with the pid, the process's identity.
    pub start_time: u64,
}

/// `PF_KTHREAD` in the flags field.
pub const PF_KTHREAD: u32 = 0x0020_0000;
/// `PF_EXITING` in the flags field (include/linux/sched.h): set at the start
/// of do_exit, before the fd table is dropped.
pub const PF_EXITING: u32 = 0x0000_0004;

impl StatLine {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
    /// Exiting or dead: its fds (if any are still shown) are no longer its
    /// own, so a count read now is not a drop of the process's own.
    pub fn is_exiting(&self) -> bool {
        self.flags & PF_EXITING != 0 || self.is_zombie()
    }
}

/// Parse the text of `/proc/<pid>/stat`. `comm` may hold spaces and
/// parentheses, so fields are counted from the last `)`. None for a short
/// or malformed text (a process that went away mid-read reads empty).
pub fn parse_stat(text: &str) -> Option<StatLine> {
    let (comm, mut rest) = split_comm(text)?;
    let comm = comm.to_string();
    // Fields after comm: 3 state, 4 ppid, ... 9 flags, ... 22 starttime.
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?; // field 4
    let flags = rest.nth(4)?.parse().ok()?; // field 9
    let start_time = rest.nth(12)?.parse().ok()?; // field 22
    Some(StatLine {
        comm,
        state,
        ppid,
        flags,
        start_time,
    })
}

/// comm, and the fields after it (from field 3, the state).
fn split_comm(text: &str) -> Option<(&str, std::str::SplitAsciiWhitespace<'_>)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?;
    Some((comm, text.get(close + 1..)?.split_ascii_whitespace()))
}

/// What a process costs, from the same line: CPU time, start and resident
/// set (what the Prometheus client libraries export as `process_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatUsage {
    /// Fields 14 and 15, clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Field 22, clock ticks after boot.
    pub start_time: u64,
    /// Field 24, pages.
    pub rss_pages: u64,
}

/// Parse the usage fields of `/proc/<pid>/stat`; None when short or malformed.
pub fn parse_usage(text: &str) -> Option<StatUsage> {
    let (_, rest) = split_comm(text)?;
    let f: Vec<&str> = rest.take(22).collect();
    let field = |n: usize| f.get(n - 3)?.parse().ok();
    Some(StatUsage {
        utime: field(14)?,
        stime: field(15)?,
        start_time: field(22)?,
        rss_pages: field(24)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_after_the_last_paren() {
        let text = "42 (a) b (c)) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 1 2 3\n";
        let st = parse_stat(text).expect("parsed");
        assert_eq!(st.comm, "a) b (c)");
        assert_eq!(
            (st.state, st.ppid, st.flags, st.start_time),
            ('S', 7, 4194560, 123456)
        );
        assert!(!st.is_zombie() && !st.is_kernel_thread());
        for short in ["", "42 (x", "42 (x) S", "42 (x) S 1 2 3 4 5 6 7"] {
            assert_eq!(parse_stat(short), None, "{short:?}");
        }
    }

    #[test]
    fn usage_fields() {
        // A real line of /proc/self/stat (comm with a space and a paren).
        let text = "4242 (fd watch) S 1 4242 4242 0 -1 4194560 2095 0 0 0 157 42 0 0 20 0 3 0 98765 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_usage(text),
            Some(StatUsage {
                utime: 157,
                stime: 42,
                start_time: 98765,
                rss_pages: 2048
            })
        );
        assert_eq!(parse_usage("4242 (x) S 1 2 3 4 5 6 7 8 9 10 11 x"), None);
        assert_eq!(parse_usage(&text[..60]), None);
    }
}
