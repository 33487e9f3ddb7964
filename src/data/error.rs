use std::path::{Path, PathBuf};

/// Where a record is: a line of a text file, a row of a Parquet file (numbered from 1).
pub(crate) fn place(path: &Path, line: u64) -> String {
    let unit = if super::parquet::is_parquet(path) {
        "row"
    } else {
        "line"
    };
    format!("{}, {unit} {line}", path.display())
}

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
    #[error("{}: {message}", place(path, *line))]
    Record {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{}, field '{field}': {message}", place(path, *line))]
    Field {
        path: PathBuf,
        line: u64,
        field: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Inconsistent { path: PathBuf, message: String },
    /// The csv crate reads a quote left open to the end of the file as one field holding
    /// every row after it, without an error.
    #[error("{}, line {line}: a quoted field opens here and never closes: every row after it would become part of this field; close the quote (\")", path.display())]
    UnclosedQuote { path: PathBuf, line: u64 },
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
