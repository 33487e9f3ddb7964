use super::lines::LineTracker;
use std::path::PathBuf;

/// Everything that can be wrong with an input file. Messages name the file, the line and the
/// field, never the text of a post: posts are sensitive.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: the file is empty; expected {expected}", path.display())]
    Empty { path: PathBuf, expected: String },
    #[error("{}: the header has no column '{column}' (found: {found}); add it or rename the column", path.display())]
    MissingColumn {
        path: PathBuf,
        column: String,
        found: String,
    },
    #[error("{}, line {line}: {message}", path.display())]
    Record {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{}, line {line}, field '{field}': {message}", path.display())]
    Field {
        path: PathBuf,
        line: u64,
        field: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Inconsistent { path: PathBuf, message: String },
}

/// Turns a csv error into one that names the file, the line and, where known, the field.
pub(crate) fn from_csv(
    path: &std::path::Path,
    headers: &[String],
    lines: &LineTracker,
    err: csv::Error,
) -> DataError {
    let path = path.to_path_buf();
    let at = |pos: Option<&csv::Position>| pos.map(|p| lines.line_of(p.byte())).unwrap_or(0);
    let line = at(err.position());
    match err.into_kind() {
        csv::ErrorKind::Io(source) => DataError::Io { path, source },
        csv::ErrorKind::Utf8 { pos, err } => DataError::Field {
            path,
            line: pos.as_ref().map_or(line, |p| at(Some(p))),
            field: headers
                .get(err.field())
                .cloned()
                .unwrap_or_else(|| format!("#{}", err.field() + 1)),
            message: "invalid UTF-8; save the file as UTF-8".into(),
        },
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => DataError::Record {
            path,
            line: pos.as_ref().map_or(line, |p| at(Some(p))),
            message: format!(
                "expected {expected_len} fields, found {len} (an unclosed or stray quote, or a missing separator?)"
            ),
        },
        other => DataError::Record {
            path,
            line,
            message: format!("malformed CSV: {other:?}"),
        },
    }
}

/// Decodes a CSV record field by field, naming the line and field that is not UTF-8.
pub(crate) fn utf8_record(
    path: &std::path::Path,
    headers: &[String],
    line: u64,
    record: &csv::ByteRecord,
) -> Result<Vec<String>, DataError> {
    record
        .iter()
        .enumerate()
        .map(|(i, field)| {
            String::from_utf8(field.to_vec()).map_err(|_| DataError::Field {
                path: path.to_path_buf(),
                line,
                field: headers
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("#{}", i + 1)),
                message: "invalid UTF-8; save the file as UTF-8".into(),
            })
        })
        .collect()
}

/// Whether a value from a file may appear in a message: short, without spaces.
fn is_quotable(s: &str) -> bool {
    s.chars().count() <= 24 && !s.chars().any(char::is_whitespace)
}

/// How an error shows a value from a file: quoted when it is short and has no spaces (a number,
/// a date), otherwise by its length only, because a wrongly mapped column may hold post text.
pub(crate) fn quote_value(s: &str) -> String {
    let s = s.trim();
    if is_quotable(s) {
        format!("'{s}'")
    } else {
        format!(
            "a value of {} characters (not shown: it may be post text)",
            s.chars().count()
        )
    }
}

/// The position of a column the file must have, or an error listing the columns it has.
pub(crate) fn require_column(
    path: &std::path::Path,
    headers: &[String],
    name: &str,
) -> Result<usize, DataError> {
    headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| DataError::MissingColumn {
            path: path.to_path_buf(),
            column: name.to_owned(),
            found: describe_headers(headers),
        })
}

/// The header names of a CSV for an error message. A name that could be post text (see
/// [`quote_value`]) is counted, not shown: in a file without a header row the "header" is the
/// first row of posts.
pub(crate) fn describe_headers(headers: &[String]) -> String {
    let names: Vec<&str> = headers
        .iter()
        .map(|h| h.trim())
        .filter(|h| is_quotable(h))
        .collect();
    let others = headers.len() - names.len();
    match (names.is_empty(), others) {
        (_, 0) => names.join(", "),
        (true, n) => {
            format!("{n} values that do not look like column names; is the header row missing?")
        }
        (false, n) => format!(
            "{}, and {n} values that do not look like column names; is the header row missing?",
            names.join(", ")
        ),
    }
}
