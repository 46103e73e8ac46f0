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
    let mut samples = Vec::with_capacity(lines.len());
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
            Err(e) => {
                return Err(InputError::Malformed {
                    path: name.into(),
                    line: n,
                    detail: format!("not an fdwatch sample: {e}"),
                })
            }
        }
    }
    Ok(split_by_process(samples))
}
