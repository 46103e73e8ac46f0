//! Plain CSV from other tools: `unix_time,fds[,soft_limit]`, header optional.
//! With a header, columns are found by name (`unix_time`/`time`/`timestamp`,
//! `fds`/`open_fds`/`value`, `soft_limit`/`limit`/`max_fds`); times may also be
//! RFC 3339.

use super::{minimal_sample, InputError, RawSeries};

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
        if t.is_finite() {
            return Ok(t);
        }
    }
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .ok_or_else(|| format!("'{s}' is not a time (unix seconds or RFC 3339)"))
}

fn count(s: &str, what: &str) -> Result<u64, String> {
    let s = s.trim_matches('"');
    s.parse::<u64>()
        .or_else(|_| match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v.round() as u64),
            _ => Err(()),
        })
        .map_err(|_| format!("'{s}' is not a {what} count"))
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

pub(crate) fn parse(name: &str, text: &str) -> Result<Vec<RawSeries>, InputError> {
    let comm = std::path::Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "csv".into());
    let mut cols: Columns = (0, 1, Some(2));
    let mut samples = Vec::new();
    let mut seen_row = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if !seen_row {
            seen_row = true;
            if let Some(h) = header(&fields) {
                cols = h;
                continue;
            }
        }
        match row(&fields, cols) {
            Ok((t, fds, soft)) => samples.push(minimal_sample(0, &comm, t, fds, soft)),
            Err(detail) if samples.is_empty() => {
                return Err(InputError::WrongKind {
                    path: name.into(),
                    expected: super::Format::Csv.expected().into(),
                    detail: format!(" (line {}: {detail})", i + 1),
                })
            }
            Err(detail) => {
                return Err(InputError::Malformed {
                    path: name.into(),
                    line: i + 1,
                    detail,
                })
            }
        }
    }
    Ok(vec![RawSeries {
        name: format!("{comm} (CSV)"),
        labels: Default::default(),
        samples,
        notes: Vec::new(),
    }])
}
