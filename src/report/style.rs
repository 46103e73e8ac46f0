//! How text sits on a terminal: colour for levels (and when to use it),
//! display width, elision with an ellipsis, and a column layout that fits
//! a width by shrinking, then dropping, columns. Shared by the live screen
//! (`screen`) and `top`; formatting only, never reads the terminal itself
//! (the driver passes the width and the colour decision in a [`Frame`]).

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::diagnose::Level;

/// `--color`: auto (a terminal, unless the environment says otherwise),
/// always, never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// Whether to colour stdout. The flag wins over the environment (an
/// explicit choice is the user's latest word); under `auto`, `NO_COLOR`
/// with any non-empty value turns colour off (no-color.org), then
/// `CLICOLOR_FORCE` other than `0` turns it on even off a terminal, then
/// `CLICOLOR=0` or `TERM=dumb` turn it off; else colour exactly when stdout
/// is a terminal. `env` looks a variable up (the real environment, or a
/// table in tests).
pub fn color_enabled(
    choice: ColorChoice,
    stdout_is_tty: bool,
    env: impl Fn(&str) -> Option<String>,
) -> bool {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            if set("NO_COLOR").is_some() {
                false
            } else if set("CLICOLOR_FORCE").is_some_and(|v| v != "0") {
                true
            } else if set("CLICOLOR").as_deref() == Some("0")
                || set("TERM").as_deref() == Some("dumb")
            {
                false
            } else {
                stdout_is_tty
            }
        }
    }
}

/// What a renderer needs to know about where its text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Frame {
    /// Columns to fit; None: no limit (a pipe, a log).
    pub width: Option<usize>,
    /// Colour the levels (ANSI SGR).
    pub color: bool,
}

impl Frame {
    /// `text` in the colour of `level` (OK green, WARNING yellow, CRITICAL
    /// bold red, UNKNOWN magenta), or as is without colour.
    pub fn level(&self, level: Level, text: &str) -> String {
        if !self.color || text.is_empty() {
            return text.to_string();
        }
        let sgr = match level {
            Level::Ok => "32",
            Level::Warning => "33",
            Level::Critical => "1;31",
            Level::Unknown => "35",
        };
        format!("\x1b[{sgr}m{text}\x1b[0m")
    }

    /// A line cut to the frame's width (with an ellipsis).
    pub fn fit(&self, line: &str) -> String {
        match self.width {
            Some(w) => elide(line, w),
            None => line.to_string(),
        }
    }
}

/// Columns `s` takes on a terminal (wide characters count two).
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `s` cut to at most `max` columns, ending in `…` when cut.
pub fn elide(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > max - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// `s` cut to at most `max` columns in the middle (`/var/lib/…/sock`),
/// which keeps a path's file name.
pub fn elide_middle(s: &str, max: usize) -> String {
    if width(s) <= max || max < 5 {
        return elide(s, max);
    }
    let keep = max - 1;
    let tail_cols = keep / 2;
    let head_cols = keep - tail_cols;
    let mut head = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > head_cols {
            break;
        }
        head.push(c);
        used += w;
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        let w = UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > tail_cols {
            break;
        }
        tail.push(c);
        used += w;
    }
    head.push('…');
    head.extend(tail.into_iter().rev());
    head
}

/// One column of a [`layout`].
#[derive(Debug, Clone)]
pub struct Column {
    pub head: String,
    pub right: bool,
    /// May be cut (with an ellipsis) down to this many columns; at
    /// `usize::MAX` never cut.
    pub min: usize,
    /// Order in which columns are cut when the table is too wide (lower
    /// first); columns with the same rank are cut together.
    pub shrink: u8,
    /// Order in which columns are dropped once every column is at its
    /// minimum (lower first); None: always shown.
    pub drop: Option<u8>,
}

impl Column {
    pub fn new(head: &str) -> Column {
        Column {
            head: head.to_string(),
            right: false,
            min: usize::MAX,
            shrink: 0,
            drop: None,
        }
    }
    pub fn right(mut self) -> Column {
        self.right = true;
        self
    }
    pub fn shrink_to(mut self, min: usize, rank: u8) -> Column {
        self.min = min;
        self.shrink = rank;
        self
    }
    pub fn drop_rank(mut self, rank: u8) -> Column {
        self.drop = Some(rank);
        self
    }
}

/// A laid-out table: which columns are shown, and each line's cells,
/// padded to their column (the last column unpadded, so no line ends in
/// blanks). Join a line's cells with [`Table::GAP`].
pub struct Table {
    /// Indexes of the shown columns, in order.
    pub shown: Vec<usize>,
    /// The header first, then one entry per row.
    pub lines: Vec<Vec<String>>,
}

impl Table {
    pub const GAP: &'static str = "  ";

    pub fn join(cells: &[String]) -> String {
        cells.join(Self::GAP).trim_end().to_string()
    }
}

/// Lay `rows` out under `cols` within `width` columns: cut the columns with
/// the lowest shrink rank first (down to their minimum), then drop columns
/// by their drop rank; cells are elided with `…`.
pub fn layout(cols: &[Column], rows: &[Vec<String>], width: Option<usize>) -> Table {
    let n = cols.len();
    let mut widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| self::width(c)))
                .chain(std::iter::once(self::width(&cols[i].head)))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut shown: Vec<usize> = (0..n).collect();
    let total = |shown: &[usize], widths: &[usize]| {
        shown.iter().map(|i| widths[*i]).sum::<usize>()
            + Table::GAP.len() * shown.len().saturating_sub(1)
    };
    if let Some(max) = width {
        let natural = widths.clone();
        let mut droppable: Vec<usize> = (0..n).filter(|i| cols[*i].drop.is_some()).collect();
        droppable.sort_by_key(|i| cols[*i].drop);
        let mut droppable = droppable.into_iter();
        let mut ranks: Vec<u8> = cols
            .iter()
            .filter(|c| c.min != usize::MAX)
            .map(|c| c.shrink)
            .collect();
        ranks.sort_unstable();
        ranks.dedup();
        loop {
            // Cut, rank by rank, one column of the widest in the rank at a time.
            widths.clone_from(&natural);
            for rank in &ranks {
                while total(&shown, &widths) > max {
                    let widest = shown
                        .iter()
                        .copied()
                        .filter(|i| cols[*i].shrink == *rank && widths[*i] > cols[*i].min)
                        .max_by_key(|i| widths[*i]);
                    match widest {
                        Some(i) => widths[i] -= 1,
                        None => break,
                    }
                }
            }
            if total(&shown, &widths) <= max {
                break;
            }
            // Still too wide at every minimum: drop the next column and
            // lay out again (what it freed goes back to the cut ones).
            match droppable.next() {
                Some(i) => shown.retain(|s| *s != i),
                None => break,
            }
        }
    }
    let last = shown.last().copied();
    let cell = |i: usize, text: &str| {
        let t = elide(text, widths[i]);
        let pad = widths[i].saturating_sub(self::width(&t));
        if Some(i) == last && !cols[i].right {
            t
        } else if cols[i].right {
            format!("{}{t}", " ".repeat(pad))
        } else {
            format!("{t}{}", " ".repeat(pad))
        }
    };
    let mut lines = Vec::with_capacity(rows.len() + 1);
    lines.push(shown.iter().map(|i| cell(*i, &cols[*i].head)).collect());
    for r in rows {
        lines.push(
            shown
                .iter()
                .map(|i| cell(*i, r.get(*i).map_or("", String::as_str)))
                .collect(),
        );
    }
    Table { shown, lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn colour_decision() {
        use ColorChoice::*;
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(ColorChoice, bool, Vars, bool)] = &[
            (Auto, true, &[], true),
            (Auto, false, &[], false),
            (Auto, true, &[("NO_COLOR", "1")], false),
            (Auto, true, &[("NO_COLOR", "")], true),
            (Auto, false, &[("CLICOLOR_FORCE", "1")], true),
            (Auto, false, &[("CLICOLOR_FORCE", "0")], false),
            (
                Auto,
                false,
                &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")],
                false,
            ),
            (Auto, true, &[("CLICOLOR", "0")], false),
            (Auto, true, &[("TERM", "dumb")], false),
            (Always, false, &[("NO_COLOR", "1")], true),
            (Never, true, &[("CLICOLOR_FORCE", "1")], false),
        ];
        for (choice, tty, vars, want) in cases {
            assert_eq!(
                color_enabled(*choice, *tty, env(vars)),
                *want,
                "{choice:?} tty={tty} {vars:?}"
            );
        }
    }

    #[test]
    fn levels_in_colour_only_when_asked() {
        let on = Frame {
            width: None,
            color: true,
        };
        assert_eq!(
            on.level(Level::Warning, "WARNING"),
            "\x1b[33mWARNING\x1b[0m"
        );
        assert_eq!(on.level(Level::Critical, "X"), "\x1b[1;31mX\x1b[0m");
        assert_eq!(Frame::default().level(Level::Critical, "X"), "X");
    }

    #[test]
    fn elision_by_display_width() {
        assert_eq!(elide("abcdef", 6), "abcdef");
        assert_eq!(elide("abcdef", 4), "abc…");
        assert_eq!(elide("日本語テキスト", 5), "日本…");
        assert_eq!(width(&elide("日本語テキスト", 6)), 5);
        assert_eq!(elide("abc", 0), "");
        assert_eq!(
            elide_middle("/var/lib/service/sockets/s.sock", 15),
            "/var/li…/s.sock"
        );
        assert_eq!(
            width(&elide_middle("/var/lib/service/sockets/s.sock", 15)),
            15
        );
    }

    #[test]
    fn layout_shrinks_then_drops() {
        let cols = [
            Column::new("PID").right(),
            Column::new("COMMAND").shrink_to(4, 0),
            Column::new("SOFT").right().drop_rank(0),
            Column::new("VERDICT"),
        ];
        let rows = vec![vec![
            "1".to_string(),
            "a-very-long-name".to_string(),
            "1024".to_string(),
            "WARNING".to_string(),
        ]];
        let wide = layout(&cols, &rows, None);
        assert_eq!(
            Table::join(&wide.lines[1]),
            "  1  a-very-long-name  1024  WARNING"
        );
        let fit = layout(&cols, &rows, Some(26));
        let line = Table::join(&fit.lines[1]);
        assert_eq!(line, "  1  a-ver…  1024  WARNING");
        assert!(width(&line) <= 26);
        let narrow = layout(&cols, &rows, Some(20));
        assert_eq!(narrow.shown, [0, 1, 3], "SOFT dropped");
        assert_eq!(
            Table::join(&narrow.lines[1]),
            "  1  a-ver…  WARNING",
            "the room SOFT left goes back to COMMAND"
        );
    }
}
