//! fdwatch JSON Lines: each line a `report::json::Record` (a sample and the
//! live verdict); only the sample is kept, the verdict is recomputed.

use super::{split_by_process, InputError, RawSeries};
use crate::report::json::Record;

pub(crate) fn parse(
    name: &str,
    text: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<RawSeries>, InputError> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let last_line = lines.last().map(|l| l.0);
    let total = lines.len();
    let mut samples = Vec::with_capacity(lines.len());
    // Corrupt lines in the middle (a disk error, two writers interleaved):
    // skipped and said, as long as they are few; many mean a wrong file.
    let mut corrupt: Vec<(usize, String)> = Vec::new();
    for (n, line) in lines {
        match serde_json::from_str::<Record>(line) {
            Ok(r) => samples.push(r.sample),
            Err(e)
                if Some(n) == last_line
                    && line.starts_with('{')
                    && (e.is_eof() || !text.ends_with('\n')) =>
            {
                // A recording cut short by a crash or a kill: the rest is good.
                warnings.push(format!(
                    "{name}: line {n} is truncated (the recording was cut short?); skipped it"
                ));
            }
            Err(e) if samples.is_empty() && !line.starts_with('{') => {
                return Err(InputError::WrongKind {
                    path: name.into(),
                    expected: super::Format::Jsonl.expected().into(),
                    detail: format!(" (line {n}: {e})"),
                });
            }
            Err(e) if samples.is_empty() && n == 1 => {
                return Err(InputError::WrongKind {
                    path: name.into(),
                    expected: super::Format::Jsonl.expected().into(),
                    detail: format!(" (line 1: {e})"),
                });
            }
            Err(e) => corrupt.push((n, e.to_string())),
        }
    }
    if let Some((first, e)) = corrupt.first() {
        if corrupt.len() > max_corrupt(total) {
            return Err(InputError::Malformed {
                path: name.into(),
                line: *first,
                detail: format!(
                    "not an fdwatch sample: {e} ({} of {total} lines are not samples)",
                    corrupt.len()
                ),
            });
        }
        let at: Vec<String> = corrupt.iter().take(5).map(|(n, _)| n.to_string()).collect();
        let more = if corrupt.len() > 5 { ", ..." } else { "" };
        warnings.push(format!(
            "{name}: skipped {} corrupt line(s) (line {}{more}: {e})",
            corrupt.len(),
            at.join(", ")
        ));
    }
    Ok(split_by_process(samples))
}

/// How many corrupt lines a recording of `total` lines may have and still be
/// read: one in ten, and at least one.
fn max_corrupt(total: usize) -> usize {
    (total / 10).max(1)
}
