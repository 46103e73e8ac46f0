//! Threshold ranges in the Monitoring Plugins syntax (`check -w/-c`,
//! `--warn-usage 10:80`): parsing, "does this value alert", and the range
//! written back for perfdata. Pure: no I/O, no wording beyond the syntax.
//!
//! `[@]start:end`, endpoints included in the range; `10` is `0:10`, an
//! empty end is +infinity, `~` as start is -infinity. A value *outside* the
//! range alerts; with `@`, a value *inside* it does (the development
//! guidelines of the monitoring-plugins project).

use std::fmt;

/// One parsed range. `percent` says the text carried `%` (a share of the
/// soft limit rather than a count); the numbers are as written (80 for 80%).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub start: f64,
    pub end: f64,
    /// `@`: alert inside rather than outside.
    pub inside: bool,
    pub percent: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RangeError {
    #[error("an empty range")]
    Empty,
    #[error("'{0}' is not a number (ranges are [@]start:end, e.g. 10, 10:, ~:10, 10:20, @10:20)")]
    NotANumber(String),
    #[error("the start {start} is above the end {end}")]
    StartAfterEnd { start: String, end: String },
    #[error("'%' on the start but not the end")]
    MixedUnits,
}

impl Range {
    /// Alert above `end` (the plain `N` form).
    pub fn upto(end: f64) -> Range {
        Range {
            start: 0.0,
            end,
            inside: false,
            percent: false,
        }
    }

    /// Alert below `start` (`N:`), e.g. a minimum time left.
    pub fn at_least(start: f64) -> Range {
        Range {
            start,
            end: f64::INFINITY,
            inside: false,
            percent: false,
        }
    }

    pub fn percent(mut self) -> Range {
        self.percent = true;
        self
    }

    /// Parse `[@]start:end`, with an optional `%` after each number.
    pub fn parse(text: &str) -> Result<Range, RangeError> {
        let t = text.trim();
        let (inside, body) = match t.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        if body.is_empty() {
            return Err(RangeError::Empty);
        }
        let (start_text, end_text) = match body.split_once(':') {
            Some(("", "")) => return Err(RangeError::Empty),
            Some((s, e)) => (s, e),
            None => ("", body),
        };
        let (start_text, start_pct) = strip_percent(start_text);
        let (end_text, end_pct) = strip_percent(end_text);
        if start_pct && !end_pct && !end_text.is_empty() {
            return Err(RangeError::MixedUnits);
        }
        let start = match start_text {
            "" => 0.0,
            "~" => f64::NEG_INFINITY,
            s => number(s)?,
        };
        let end = match end_text {
            "" if body.contains(':') => f64::INFINITY,
            "" => return Err(RangeError::Empty),
            s => number(s)?,
        };
        if start > end {
            return Err(RangeError::StartAfterEnd {
                start: start_text.into(),
                end: end_text.into(),
            });
        }
        Ok(Range {
            start,
            end,
            inside,
            percent: end_pct || start_pct,
        })
    }

    /// Whether `v` raises the level this range stands for.
    pub fn alerts(&self, v: f64) -> bool {
        let within = v >= self.start && v <= self.end;
        within == self.inside
    }

    /// The range with both ends multiplied by `k` (a usage range in
    /// percent as a range of fd counts: `k` = soft limit / 100).
    pub fn scaled(&self, k: f64, round: fn(f64) -> f64) -> Range {
        let f = |x: f64| if x.is_finite() { round(x * k) } else { x };
        Range {
            start: f(self.start),
            end: f(self.end),
            inside: self.inside,
            percent: false,
        }
    }
}

fn strip_percent(s: &str) -> (&str, bool) {
    match s.strip_suffix('%') {
        Some(rest) => (rest, true),
        None => (s, false),
    }
}

/// A finite decimal number in the C locale: digits, one `.`, a sign.
/// (`str::parse::<f64>` alone would take `inf`, `nan` and `1e3`.)
fn number(s: &str) -> Result<f64, RangeError> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-' || c == '+');
    s.parse::<f64>()
        .ok()
        .filter(|v| ok && v.is_finite())
        .ok_or_else(|| RangeError::NotANumber(s.into()))
}

/// A number as perfdata writes it: C locale, no exponent, no trailing zeros.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The range in plugin syntax, shortest form, without `%` (perfdata puts
/// the unit on the value): `10`, `10:`, `~:10`, `10:20`, `@10:20`.
impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inside {
            f.write_str("@")?;
        }
        let end = if self.end.is_infinite() {
            String::new()
        } else {
            num(self.end)
        };
        if self.start == 0.0 && !end.is_empty() {
            return f.write_str(&end);
        }
        let start = if self.start.is_infinite() {
            "~".to_string()
        } else {
            num(self.start)
        };
        write!(f, "{start}:{end}")
    }
}

impl serde::Serialize for Range {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pct = if self.percent { "%" } else { "" };
        s.serialize_str(&format!("{self}{pct}"))
    }
}

impl<'de> serde::Deserialize<'de> for Range {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Range, D::Error> {
        let text = String::deserialize(d)?;
        Range::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guidelines' table: range, value, alert or not.
    #[test]
    fn the_guidelines_examples() {
        #[rustfmt::skip]
        let table: &[(&str, f64, bool)] = &[
            // `10`: < 0 or > 10
            ("10", -1.0, true), ("10", 0.0, false), ("10", 10.0, false), ("10", 10.5, true),
            // `10:`: < 10
            ("10:", 9.9, true), ("10:", 10.0, false), ("10:", 1e9, false),
            // `~:10`: > 10
            ("~:10", -1e9, false), ("~:10", 10.0, false), ("~:10", 11.0, true),
            // `10:20`: < 10 or > 20
            ("10:20", 9.0, true), ("10:20", 10.0, false), ("10:20", 20.0, false), ("10:20", 21.0, true),
            // `@10:20`: >= 10 and <= 20
            ("@10:20", 9.0, false), ("@10:20", 10.0, true), ("@10:20", 15.0, true), ("@10:20", 20.0, true), ("@10:20", 20.1, false),
            // The guidelines' own numbers.
            ("~:0", 1.0, true), ("~:0", 0.0, false), ("@5", 3.0, true), ("@5", 6.0, false),
            ("0.5:1.5", 1.0, false), ("-5:5", -6.0, true), ("600:", 599.0, true),
            // Percent forms.
            ("80%", 81.0, true), ("10%:80%", 5.0, true), ("10:80%", 50.0, false), ("90%:", 89.0, true),
        ];
        for (text, v, alert) in table {
            let r = Range::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r.alerts(*v), *alert, "{text} at {v}");
        }
    }

    #[test]
    fn bad_ranges_are_refused() {
        for text in [
            "", "@", "abc", "20:10", "nan", "inf", "1e3", "10%:20", "~", "10:~", "1,5", ":",
        ] {
            assert!(Range::parse(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn written_back_in_the_shortest_form() {
        for (text, shown) in [
            ("10", "10"),
            ("0:10", "10"),
            ("10:", "10:"),
            ("~:10", "~:10"),
            ("10:20", "10:20"),
            ("@10:20", "@10:20"),
            ("80%", "80"),
            ("0.25:1.5", "0.25:1.5"),
            (":5", "5"),
        ] {
            assert_eq!(Range::parse(text).unwrap().to_string(), shown, "{text}");
        }
        assert!(Range::parse("80%").unwrap().percent);
        assert!(!Range::parse("80").unwrap().percent);
        let r = Range::parse("10%:80%").unwrap().scaled(5.0, f64::floor);
        assert_eq!(r.to_string(), "50:400");
        let json = serde_json::to_string(&Range::parse("@10:20%").unwrap()).unwrap();
        assert_eq!(json, "\"@10:20%\"");
        let back: Range = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Range::parse("@10:20%").unwrap());
    }
}
