//! Escaping of untrusted text, one function per output context.
//!
//! Process names, argv[0], paths and socket names are chosen by whoever
//! runs the process: `prctl(PR_SET_NAME)` takes any 15 bytes, so a name may
//! carry a terminal escape sequence (`\x1b]0;PWN\x07` retitles the window),
//! a newline (which splits a plugin's status line), `|` (which starts
//! perfdata), `<&"` or characters XML 1.0 forbids. Invalid UTF-8 was
//! already replaced by U+FFFD where the text was read (`sample`). Every
//! format in `report` passes such text through the function for its
//! context here, so the escaping rules live in one place and are tested
//! once. JSON needs none of this: serde_json escapes every control
//! character itself (tests/escape.rs checks it).
//!
//! Characters that must not reach an output raw are shown, not dropped, in
//! the form Rust and logfmt readers know: `\n`, `\r`, `\t`, `\x1b` (C0 and
//! DEL), `\u{9b}` (C1 controls and the invisible bidi overrides that can
//! make text read differently from what it is).

use std::fmt::Write;

/// True for what a terminal would act on or hide: C0/DEL/C1 controls and
/// the Unicode bidi embedding, override and isolate controls.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Characters XML 1.0 does not allow anywhere in a document (its `Char`
/// production: tab, newline, carriage return, U+0020..U+D7FF,
/// U+E000..U+FFFD, U+10000..; Rust strings hold no surrogates).
fn xml_forbidden(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

/// Append the visible form of an unsafe character.
fn push_visible(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// For a terminal (the live screen, `top`, plain lines, stderr): one line,
/// no control characters; each shown as a visible escape.
pub fn terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_unsafe(c) {
            push_visible(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// For a monitoring plugin's output line: as [`terminal`] (so one line),
/// and no `|`, which would start the performance data early.
pub fn plugin_line(s: &str) -> String {
    terminal(s).replace('|', "/")
}

/// For XML character data (a JUnit `<failure>` body): `&<>` as entities,
/// tabs and newlines kept, every other control character and each
/// character XML 1.0 forbids shown as a visible escape.
pub fn xml_text(s: &str) -> String {
    xml(s, false)
}

/// For an XML attribute value in double or single quotes (JUnit names and
/// messages): one line, as [`terminal`], then `&<>"'` as entities.
pub fn xml_attr(s: &str) -> String {
    xml(s, true)
}

/// The one walk of both XML contexts: an attribute also escapes quotes and
/// keeps no line break or tab.
fn xml(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\'' if attr => out.push_str("&apos;"),
            '\n' | '\t' if !attr => out.push(c),
            c if is_unsafe(c) || xml_forbidden(c) => push_visible(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// For SVG `<text>` drawn through plotters, whose SVG backend writes `&<>"'`
/// as entities itself: here only one line and no character XML forbids.
pub fn svg_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_unsafe(c) || xml_forbidden(c) {
            push_visible(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// For a Prometheus label value between double quotes: the exposition
/// format escapes `\`, `"` and newline (`\\`, `\"`, `\n`). Other control
/// characters are legal there but would reach whoever reads `/metrics` on
/// a terminal; they become their visible escape with its backslash doubled
/// (the value reads `\x1b`), since a parser rejects any other escape.
pub fn prometheus_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if is_unsafe(c) => {
                out.push('\\');
                push_visible(&mut out, c);
            }
            c => out.push(c),
        }
    }
    out
}

/// For a logfmt value (`key=value` in plain lines): bare when it is one
/// non-empty word of safe characters, else in double quotes with `"` and
/// `\` escaped and control characters visible.
pub fn logfmt(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| !(c == ' ' || c == '=' || c == '"' || c == '\\' || is_unsafe(c)));
    if bare {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_unsafe(c) => push_visible(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "\u{1b}]0;PWN\u{7}\u{1b}[31mRED";

    #[test]
    fn terminal_shows_controls_visibly() {
        assert_eq!(terminal(HOSTILE), "\\x1b]0;PWN\\x07\\x1b[31mRED");
        assert_eq!(terminal("a\nb\r\tc\u{7f}"), "a\\nb\\r\\tc\\x7f");
        // C1 CSI and a right-to-left override.
        assert_eq!(terminal("x\u{9b}2Jy\u{202e}z"), "x\\u{9b}2Jy\\u{202e}z");
        // Ordinary text, wide characters and the replacement character pass.
        assert_eq!(
            terminal("rpc-msg 日本 \u{fffd} <&\"|"),
            "rpc-msg 日本 \u{fffd} <&\"|"
        );
        assert!(!terminal(HOSTILE).chars().any(char::is_control));
    }

    #[test]
    fn plugin_line_is_one_line_without_a_pipe() {
        let s = plugin_line("a|b\nc\u{1b}[2J");
        assert_eq!(s, "a/b\\nc\\x1b[2J");
        assert!(!s.contains('|') && !s.contains('\n'));
    }

    #[test]
    fn xml_text_and_attributes() {
        assert_eq!(xml_text("<a & 'b'>\n\tx"), "&lt;a &amp; 'b'&gt;\n\tx");
        assert_eq!(
            xml_text("\u{1}\u{c}\u{1b}\u{fffe}"),
            "\\x01\\x0c\\x1b\\u{fffe}"
        );
        assert_eq!(
            xml_attr("<a & \"b\" 'c'>\nd"),
            "&lt;a &amp; &quot;b&quot; &apos;c&apos;&gt;\\nd"
        );
        assert_eq!(xml_attr("\u{0}\u{b}"), "\\x00\\x0b");
        for s in [xml_text(HOSTILE), xml_attr(HOSTILE)] {
            assert!(!s.chars().any(|c| xml_forbidden(c) || c == '\u{1b}'), "{s}");
        }
    }

    #[test]
    fn svg_text_leaves_entities_to_plotters() {
        assert_eq!(svg_text("a<&b\n\u{1}\u{ffff}"), "a<&b\\n\\x01\\u{ffff}");
    }

    #[test]
    fn prometheus_label_values() {
        assert_eq!(prometheus_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        // Read back by a parser: `\\x1b` is a backslash, then `x1b`.
        assert_eq!(prometheus_label("\u{1b}[31m\t"), "\\\\x1b[31m\\\\t");
        assert_eq!(prometheus_label("rpc-msg"), "rpc-msg");
    }

    #[test]
    fn logfmt_quotes_only_when_needed() {
        assert_eq!(logfmt("rpc-msg"), "rpc-msg");
        assert_eq!(logfmt(""), "\"\"");
        assert_eq!(logfmt("tmux: server"), "\"tmux: server\"");
        assert_eq!(logfmt("a=b"), "\"a=b\"");
        assert_eq!(logfmt("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
        assert_eq!(logfmt(HOSTILE), "\"\\x1b]0;PWN\\x07\\x1b[31mRED\"");
    }
}
