//! Plain CSV from other tools: `unix_time,fds[,soft_limit]`, header optional.
//! With a header, columns are found by name (`unix_time`/`time`/`timestamp`,
//! `fds`/`open_fds`/`value`, `soft_limit`/`limit`/`max_fds`); times may also be
//! RFC 3339. Read line by line (at most `MAX_LINE` bytes a line); a row that
//! is not a time and counts ends the input with its line number.

use super::{minimal_sample, InputError, Key, LineRead, Lines, Raw, Step, MAX_FDS};

/// True when the first line is a CSV header or a `time,fds` row.
pub(crate) fn looks_like(text: &str) -> bool {
    let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return false;
    };
    let fields: Vec<&str> = first.split(',').map(str::trim).collect();
    if !(2..=3).contains(&fields.len()) {
        return false;
    }
    header(&fields).is_some() || row(&fields, (0, 1, Some(2))).is_ok()
}

type Columns = (usize, usize, Option<usize>);

fn header(fields: &[&str]) -> Option<Columns> {
    let find = |names: &[&str]| {
        fields.iter().position(|f| {
            let f = f.trim_matches('"').to_ascii_lowercase();
            names.contains(&f.as_str())
        })
    };
    let time = find(&["unix_time", "time", "timestamp", "ts"])?;
    let fds = find(&["fds", "open_fds", "process_open_fds", "value"])?;
    let soft = find(&["soft_limit", "limit", "max_fds", "process_max_fds", "soft"]);
    Some((time, fds, soft))
}

fn time(s: &str) -> Result<f64, String> {
    let s = s.trim_matches('"');
    if let Ok(t) = s.parse::<f64>() {
        // Any number is a time here; its range is checked where every
        // input's times are (`validate`), with the same message.
        return Ok(t);
    }
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .ok_or_else(|| format!("'{s}' is not a time (unix seconds or RFC 3339)"))
}

fn count(s: &str, what: &str) -> Result<u64, String> {
    let s = s.trim_matches('"');
    let v = s
        .parse::<u64>()
        .ok()
        .or_else(|| match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 && v <= MAX_FDS as f64 => Some(v.round() as u64),
            _ => None,
        })
        .ok_or_else(|| format!("'{s}' is not a {what} count"))?;
    Ok(v)
}

fn row(fields: &[&str], cols: Columns) -> Result<(f64, u64, Option<u64>), String> {
    let get = |i: usize| fields.get(i).copied().ok_or("missing column");
    let t = time(get(cols.0)?)?;
    let fds = count(get(cols.1)?, "fd")?;
    let soft = match cols.2.and_then(|i| fields.get(i)) {
        Some(s) if !s.is_empty() => Some(count(s, "limit")?),
        _ => None,
    };
    Ok((t, fds, soft))
}

pub(crate) struct Reader {
    lines: Lines,
    comm: String,
    cols: Columns,
    seen_row: bool,
    samples: usize,
    announced: bool,
}

impl Reader {
    pub fn new(name: &str, lines: Lines) -> Reader {
        let comm = std::path::Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "csv".into());
        Reader {
            lines,
            comm,
            cols: (0, 1, Some(2)),
            seen_row: false,
            samples: 0,
            announced: false,
        }
    }

    pub fn next(&mut self, path: &str) -> Result<Step, InputError> {
        if !self.announced {
            // The one series of a CSV file, named before its first sample.
            self.announced = true;
            return Ok(Step::Series(
                0,
                format!("{} (CSV)", self.comm),
                Default::default(),
                Vec::new(),
            ));
        }
        loop {
            match self.lines.read().map_err(|e| self.lines.io(path, e))? {
                LineRead::Eof => return Ok(Step::Done),
                LineRead::TooLong => return Err(self.lines.too_long(path)),
                LineRead::Line { .. } => {}
            }
            if let Some(step) = self.line(path)? {
                return Ok(step);
            }
        }
    }

    fn line(&mut self, path: &str) -> Result<Option<Step>, InputError> {
        let text = String::from_utf8_lossy(&self.lines.buf);
        let line = text.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let n = self.lines.number;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if !self.seen_row {
            self.seen_row = true;
            if let Some(h) = header(&fields) {
                self.cols = h;
                return Ok(None);
            }
        }
        match row(&fields, self.cols) {
            Ok((t, fds, soft)) => {
                self.samples += 1;
                Ok(Some(Step::Sample(Raw {
                    key: Key::Numbered(0),
                    sample: Box::new(minimal_sample(0, &self.comm, t, fds, soft)),
                    line: n,
                    point: false,
                })))
            }
            Err(detail) if self.samples == 0 => Err(InputError::WrongKind {
                path: path.into(),
                expected: super::Format::Csv.expected().into(),
                detail: format!(" (line {n}: {detail})"),
            }),
            Err(detail) => Err(InputError::Malformed {
                path: path.into(),
                line: n,
                detail,
            }),
        }
    }
}
