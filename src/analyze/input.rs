//! Reading interactions: CSV or JSONL rows with the mapped columns, streamed. Post text is
//! read only when a model scores it, and never kept after scoring.

use super::columns::{Column, ColumnMap};
use super::timestamp::parse_timestamp;
use crate::data::records::{Body, Records};
use crate::data::{quote_value, DataError};
use std::path::Path;

/// One interaction as read, before levels are attached.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawInteraction {
    /// Line of the file where the row starts.
    pub line: u64,
    /// 1-based position among the data rows: the id `epitome predict` gives a row without one.
    pub row: u64,
    pub id: Option<String>,
    pub responder: Option<String>,
    pub seeker: Option<String>,
    /// Unix seconds.
    pub created_at: Option<f64>,
    pub likes: Option<f64>,
    pub replied: Option<f64>,
    pub followed: Option<bool>,
    /// (seeker post, response post), when asked for.
    pub posts: Option<(String, String)>,
}

impl RawInteraction {
    /// The id to join predictions on.
    pub fn join_id(&self) -> String {
        self.id.clone().unwrap_or_else(|| self.row.to_string())
    }
}

/// A row that cannot be used, and the kind of problem for the skip summary.
#[derive(Debug)]
pub struct RowError {
    pub reason: String,
    pub error: DataError,
}

/// Streams the interactions of a file. A bad row is reported and the stream goes on, so that
/// `--on-error skip` can count what it leaves out.
pub struct InteractionReader {
    records: Records,
    columns: ColumnMap,
    want_posts: bool,
    /// Where each of our columns is in a CSV row; unused for JSONL.
    index: [Option<usize>; 9],
    rows: u64,
}

impl InteractionReader {
    /// Opens a file; `want_posts` makes the two text columns required.
    pub fn open(path: &Path, columns: ColumnMap, want_posts: bool) -> Result<Self, DataError> {
        let records = Records::open(
            path,
            "seeker_post, response_post and the optional ones of `epitome analyze --help`",
        )?;
        let mut index = [None; 9];
        if records.headers().is_some() {
            for column in Column::ALL {
                index[column.index()] = records.column(columns.name(column));
                let required =
                    matches!(column, Column::SeekerPost | Column::ResponsePost) && want_posts;
                let mapped = columns.name(column) != column.name();
                if index[column.index()].is_none() && (required || mapped) {
                    records.require_column(columns.name(column), &columns.describe(column))?;
                }
            }
        }
        Ok(Self {
            records,
            columns,
            want_posts,
            index,
            rows: 0,
        })
    }

    /// Size of the file in bytes, and how far reading has got.
    pub fn progress(&self) -> (u64, u64) {
        self.records.progress()
    }

    pub fn path(&self) -> &Path {
        self.records.path()
    }

    fn next_row(&mut self) -> Option<Result<RawInteraction, RowError>> {
        let record = match self.records.next()? {
            Ok(record) => record,
            Err(error) => {
                self.rows += 1;
                let reason = match &error {
                    DataError::UnclosedQuote { .. } => "unclosed quote",
                    _ => "malformed row",
                };
                return Some(Err(RowError {
                    reason: reason.into(),
                    error,
                }));
            }
        };
        self.rows += 1;
        let path = self.records.path();
        let line = record.line;
        let (columns, want_posts, rows) = (&self.columns, self.want_posts, self.rows);
        let parse = |fields: &dyn Fields| parse_row(path, columns, want_posts, line, rows, fields);
        Some(match record.body {
            Body::Csv(record) => {
                let fields = CsvFields {
                    record: &record,
                    index: &self.index,
                };
                parse(&fields)
            }
            Body::Json(text) => {
                match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text) {
                    Ok(object) => {
                        let fields = JsonFields {
                            object: &object,
                            columns: &self.columns,
                        };
                        parse(&fields)
                    }
                    Err(e) => Err(RowError {
                        reason: "malformed row".into(),
                        error: self.records.record_error(
                            line,
                            format!(
                                "not a JSON object: {}",
                                e.to_string().split(" at line").next().unwrap_or_default()
                            ),
                        ),
                    }),
                }
            }
        })
    }
}

impl Iterator for InteractionReader {
    type Item = Result<RawInteraction, RowError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
    }
}

/// A field as found in a row.
enum Value<'a> {
    Missing,
    Text(std::borrow::Cow<'a, str>),
    Number(f64),
    Bool(bool),
    /// Present but neither text, number nor boolean (a JSON array or object), or not UTF-8.
    Invalid(&'static str),
}

trait Fields {
    fn get(&self, column: Column) -> Value<'_>;
}

struct CsvFields<'a> {
    record: &'a csv::ByteRecord,
    index: &'a [Option<usize>; 9],
}

impl Fields for CsvFields<'_> {
    fn get(&self, column: Column) -> Value<'_> {
        let Some(i) = self.index[column.index()] else {
            return Value::Missing;
        };
        match self.record.get(i) {
            None => Value::Missing,
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(s) => Value::Text(s.into()),
                Err(_) => Value::Invalid("invalid UTF-8; save the file as UTF-8"),
            },
        }
    }
}

struct JsonFields<'a> {
    object: &'a serde_json::Map<String, serde_json::Value>,
    columns: &'a ColumnMap,
}

impl Fields for JsonFields<'_> {
    fn get(&self, column: Column) -> Value<'_> {
        use serde_json::Value as J;
        match self.object.get(self.columns.name(column)) {
            None | Some(J::Null) => Value::Missing,
            Some(J::String(s)) => Value::Text(s.as_str().into()),
            Some(J::Number(n)) => n
                .as_f64()
                .map_or(Value::Invalid("not a representable number"), Value::Number),
            Some(J::Bool(b)) => Value::Bool(*b),
            Some(_) => {
                Value::Invalid("expected a string, number or boolean, found an array or object")
            }
        }
    }
}

fn parse_row(
    path: &Path,
    columns: &ColumnMap,
    want_posts: bool,
    line: u64,
    row: u64,
    fields: &dyn Fields,
) -> Result<RawInteraction, RowError> {
    let fail = |column: Column, message: String| RowError {
        reason: format!(
            "{column}: {}",
            message.split(':').next().unwrap_or_default()
        ),
        error: DataError::Field {
            path: path.to_path_buf(),
            line,
            field: columns.describe(column),
            message,
        },
    };
    let text = |column: Column| -> Result<Option<String>, RowError> {
        match fields.get(column) {
            Value::Missing => Ok(None),
            Value::Text(s) if s.trim().is_empty() => Ok(None),
            Value::Text(s) => Ok(Some(s.trim().to_owned())),
            Value::Number(n) => Ok(Some(format_number(n))),
            Value::Bool(b) => Ok(Some(b.to_string())),
            Value::Invalid(why) => Err(fail(column, format!("invalid value: {why}"))),
        }
    };
    let number = |column: Column, what: &str| -> Result<Option<f64>, RowError> {
        let n = match fields.get(column) {
            Value::Missing => return Ok(None),
            Value::Text(s) if s.trim().is_empty() => return Ok(None),
            Value::Text(s) => match s.trim() {
                "true" | "TRUE" | "True" => 1.0,
                "false" | "FALSE" | "False" => 0.0,
                t => t.parse::<f64>().map_err(|_| {
                    fail(
                        column,
                        format!("not a number: {}; expected {what}", quote_value(t)),
                    )
                })?,
            },
            Value::Number(n) => n,
            Value::Bool(b) => f64::from(u8::from(b)),
            Value::Invalid(why) => return Err(fail(column, format!("invalid value: {why}"))),
        };
        if !n.is_finite() || n < 0.0 {
            return Err(fail(column, format!("not a count: {n}; expected {what}")));
        }
        Ok(Some(n))
    };
    let post = |column: Column| -> Result<String, RowError> {
        match fields.get(column) {
            Value::Text(s) => Ok(s.into_owned()),
            Value::Missing => Err(fail(
                column,
                "missing: the model needs the post's text".into(),
            )),
            _ => Err(fail(column, "invalid value: expected text".into())),
        }
    };
    let created_at = match text(Column::CreatedAt)? {
        None => None,
        Some(s) => Some(parse_timestamp(&s).map_err(|e| {
            fail(
                Column::CreatedAt,
                format!("not a timestamp: {} is {e}", quote_value(&s)),
            )
        })?),
    };
    let followed = match number(Column::SeekerFollowed, "0 or 1")? {
        None => None,
        Some(0.0) => Some(false),
        Some(1.0) => Some(true),
        Some(v) => {
            return Err(fail(
                Column::SeekerFollowed,
                format!("not 0 or 1: {v}; expected 0 (did not follow) or 1 (followed)"),
            ))
        }
    };
    Ok(RawInteraction {
        line,
        row,
        id: text(Column::Id)?,
        responder: text(Column::ResponderId)?,
        seeker: text(Column::SeekerId)?,
        created_at,
        likes: number(Column::Likes, "a count of likes such as 3")?,
        replied: number(Column::SeekerReplied, "0/1 or a count of replies")?,
        followed,
        posts: if want_posts {
            Some((post(Column::SeekerPost)?, post(Column::ResponsePost)?))
        } else {
            None
        },
    })
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn reads_csv_and_jsonl_with_mapped_columns() {
        let dir = tempfile::tempdir().unwrap();
        let csv = file(
            &dir,
            "a.csv",
            "id,seeker_post,response_post,upvotes,created_at,seeker_followed\r\n\
             a,s,r,3,2024-01-01T00:00:00Z,1\r\n\
             b,s,\"two\r\nlines\",,1704067200,0\r\n",
        );
        let map = ColumnMap::with_mappings(&[(Column::Likes, "upvotes".to_owned())]).unwrap();
        let rows: Vec<_> = InteractionReader::open(&csv, map.clone(), true)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].likes, Some(3.0));
        assert_eq!(rows[1].likes, None);
        assert_eq!(rows[0].created_at, rows[1].created_at);
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[1].posts.as_ref().unwrap().1, "two\r\nlines");
        assert_eq!(rows[0].followed, Some(true));

        let jsonl = file(
            &dir,
            "a.jsonl",
            "\u{feff}{\"id\": 7, \"upvotes\": \"2\", \"seeker_followed\": true}\n\n{\"upvotes\": 0}\n",
        );
        let rows: Vec<_> = InteractionReader::open(&jsonl, map, false)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows[0].join_id(), "7");
        assert_eq!(rows[1].join_id(), "2");
        assert_eq!(rows[1].line, 3);
        assert_eq!((rows[0].likes, rows[0].followed), (Some(2.0), Some(true)));
    }

    #[test]
    fn bad_values_name_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let csv = file(
            &dir,
            "bad.csv",
            "seeker_post,response_post,upvotes,created_at\ns,r,many,\ns,r,1,last tuesday\ns,r,-1,\n",
        );
        let map = ColumnMap::with_mappings(&[(Column::Likes, "upvotes".to_owned())]).unwrap();
        let errors: Vec<String> = InteractionReader::open(&csv, map.clone(), false)
            .unwrap()
            .map(|r| r.unwrap_err().error.to_string())
            .collect();
        assert!(
            errors[0].contains("bad.csv, line 2, field 'upvotes (mapped to likes)'")
                && errors[0].contains("not a number: 'many'"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].contains("line 3, field 'created_at'"),
            "{}",
            errors[1]
        );
        assert!(
            errors[2].contains("line 4") && errors[2].contains("not a count: -1"),
            "{}",
            errors[2]
        );

        let no_text = file(&dir, "t.csv", "id,upvotes\n1,2\n");
        let err = InteractionReader::open(&no_text, map.clone(), true)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no column 'seeker_post'"), "{err}");
        let unmapped = file(&dir, "u.csv", "id,likes\n1,2\n");
        let err = InteractionReader::open(&unmapped, map, false)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("'upvotes (mapped to likes)'"),
            "{err}"
        );
    }
}
