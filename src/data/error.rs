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
    #[error("{}: the file is empty; expected a header row with the columns {expected}", path.display())]
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
pub(crate) fn from_csv(path: &std::path::Path, headers: &[String], err: csv::Error) -> DataError {
    let path = path.to_path_buf();
    let line = err.position().map(|p| p.line()).unwrap_or(0);
    match err.into_kind() {
        csv::ErrorKind::Io(source) => DataError::Io { path, source },
        csv::ErrorKind::Utf8 { pos, err } => DataError::Field {
            path,
            line: pos.map(|p| p.line()).unwrap_or(line),
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
            line: pos.map(|p| p.line()).unwrap_or(line),
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
