//! Pairs to score: CSV, JSONL or Parquet with `seeker_post`, `response_post` and an optional
//! `id`, read as a stream so that any file size runs in bounded memory.

use super::error::DataError;
use super::records::{Body, Records};
use std::path::Path;

/// A (seeker post, response post) pair to score.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Pair {
    pub id: String,
    pub seeker_post: String,
    pub response_post: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    Csv,
    Jsonl,
    Parquet,
}

impl InputFormat {
    /// `.jsonl`, `.ndjson` and `.json` are JSON lines, `.parquet` and `.pq` Parquet;
    /// everything else is CSV.
    pub fn from_path(path: &Path) -> Self {
        if super::parquet::is_parquet(path) {
            return InputFormat::Parquet;
        }
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("jsonl") | Some("ndjson") | Some("json") => InputFormat::Jsonl,
            _ => InputFormat::Csv,
        }
    }

    /// What a file of this format must hold, for messages: `fields` as CSV columns or JSON
    /// fields.
    pub fn expected(self, fields: &str) -> String {
        match self {
            InputFormat::Csv => format!("a header row with the columns {fields}"),
            InputFormat::Jsonl => format!("one JSON object per line with the fields {fields}"),
            InputFormat::Parquet => format!("the columns {fields}"),
        }
    }
}

/// The columns of a CSV of pairs.
struct PairColumns {
    id: Option<usize>,
    seeker: usize,
    response: usize,
}

/// Iterator over the pairs of a file; the first error ends the stream.
pub struct PairReader {
    records: Records,
    /// `None` for JSONL.
    columns: Option<PairColumns>,
    count: u64,
    failed: bool,
}

struct JsonPair {
    id: Option<serde_json::Value>,
    seeker_post: String,
    response_post: String,
}

impl PairReader {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let records = Records::open(path, "seeker_post, response_post (and optionally id)")?;
        let columns = match records.headers() {
            None => None,
            Some(_) => Some(PairColumns {
                id: records.column("id"),
                seeker: records.require_column("seeker_post", "seeker_post")?,
                response: records.require_column("response_post", "response_post")?,
            }),
        };
        Ok(Self {
            records,
            columns,
            count: 0,
            failed: false,
        })
    }

    fn next_pair(&mut self) -> Option<Result<Pair, DataError>> {
        let n = self.count + 1;
        let record = match self.records.next()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let line = record.line;
        match (record.body, &self.columns) {
            (Body::Csv(fields), Some(c)) => {
                let fields = match self.records.utf8_fields(line, &fields) {
                    Ok(f) => f,
                    Err(e) => return Some(Err(e)),
                };
                let get = |i: usize| fields.get(i).cloned().unwrap_or_default();
                Some(Ok(Pair {
                    id: c.id.map(get).unwrap_or_else(|| n.to_string()),
                    seeker_post: get(c.seeker),
                    response_post: get(c.response),
                }))
            }
            (Body::Json(text), _) => {
                let parsed = match parse_json_pair(&text) {
                    Ok(p) => p,
                    Err(message) => return Some(Err(self.records.record_error(line, message))),
                };
                let id = match parsed.id {
                    None | Some(serde_json::Value::Null) => n.to_string(),
                    Some(serde_json::Value::String(s)) => s,
                    Some(other) => other.to_string(),
                };
                Some(Ok(Pair {
                    id,
                    seeker_post: parsed.seeker_post,
                    response_post: parsed.response_post,
                }))
            }
            (Body::Csv(_), None) => None,
        }
    }
}

/// One JSONL line as a pair. Messages name what is wrong by type and field, never by value:
/// serde's own messages quote the offending value, which here is post text.
fn parse_json_pair(text: &str) -> Result<JsonPair, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "not valid JSON ({})",
            match e.classify() {
                serde_json::error::Category::Eof => "it ends early",
                _ => "a syntax error",
            }
        )
    })?;
    let kind = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    };
    let serde_json::Value::Object(mut fields) = value else {
        return Err(format!(
            "the line is {}, not a JSON object with string fields seeker_post and response_post",
            kind(&value)
        ));
    };
    let mut text_field = |name: &str| match fields.remove(name) {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(other) => Err(format!("field {name} is {}, not a string", kind(&other))),
        None => Err(format!("no field {name}")),
    };
    Ok(JsonPair {
        seeker_post: text_field("seeker_post")?,
        response_post: text_field("response_post")?,
        id: fields.remove("id"),
    })
}

impl Iterator for PairReader {
    type Item = Result<Pair, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_pair();
        match &item {
            // A bad row still counts as a row, so that the row-number ids of the rows after
            // it stay what they are when it is fixed; a caller may go on past it.
            Some(Ok(_)) | Some(Err(DataError::Record { .. } | DataError::Field { .. })) => {
                self.count += 1
            }
            // The file itself is unreadable from here on.
            Some(Err(_)) => self.failed = true,
            None => {}
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

    fn write(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(content)
            .unwrap();
        p
    }

    #[test]
    fn reads_csv_with_multiline_quoted_field_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let csv = write(
            &dir,
            "in.csv",
            b"id,seeker_post,response_post\n7,\"two\nlines\",\"a, b\"\n",
        );
        let pairs: Vec<Pair> = PairReader::open(&csv)
            .unwrap()
            .map(|p| p.unwrap())
            .collect();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].id, "7");
        assert_eq!(pairs[0].seeker_post, "two\nlines");
        let jsonl = write(
            &dir,
            "in.jsonl",
            b"{\"seeker_post\":\"s\",\"response_post\":\"r\"}\n\n{\"id\":3,\"seeker_post\":\"s\",\"response_post\":\"r\"}\n",
        );
        let ids: Vec<String> = PairReader::open(&jsonl)
            .unwrap()
            .map(|p| p.unwrap().id)
            .collect();
        assert_eq!(ids, vec!["1", "3"]);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let missing = write(&dir, "m.csv", b"id,seeker_post\n1,x\n");
        let err = PairReader::open(&missing).err().unwrap().to_string();
        assert!(
            err.contains("m.csv") && err.contains("response_post"),
            "{err}"
        );

        let bad_utf8 = write(&dir, "u.csv", b"seeker_post,response_post\nok,\xff\xfe\n");
        let err = PairReader::open(&bad_utf8)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("response_post") && err.contains("UTF-8"),
            "{err}"
        );

        let bad_json = write(
            &dir,
            "b.jsonl",
            b"{\"seeker_post\":\"s\",\"response_post\":\"r\"}\n{\"seeker_post\": 3}\n",
        );
        let results: Vec<_> = PairReader::open(&bad_json).unwrap().collect();
        assert_eq!(results.len(), 2);
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("b.jsonl, line 2"), "{err}");

        let empty = write(&dir, "e.csv", b"");
        assert!(PairReader::open(&empty)
            .err()
            .unwrap()
            .to_string()
            .contains("empty"));
    }

    #[test]
    fn errors_name_the_problem_without_quoting_post_text() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "I feel so alone since the funeral";
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "bare.jsonl",
                format!("\"{secret}\"\n"),
                "the line is a string",
            ),
            (
                "list.jsonl",
                format!("[\"{secret}\"]\n"),
                "the line is an array",
            ),
            (
                "number.jsonl",
                format!("{{\"seeker_post\": 3, \"response_post\": \"{secret}\"}}\n"),
                "field seeker_post is a number",
            ),
            (
                "missing.jsonl",
                format!("{{\"seeker_post\": \"{secret}\"}}\n"),
                "no field response_post",
            ),
            (
                "broken.jsonl",
                format!("{{\"seeker_post\": \"{secret}\n"),
                "not valid JSON",
            ),
            (
                "no-header.csv",
                format!("{secret},Sorry to hear that\nsecond,row\n"),
                "is the header row missing?",
            ),
        ];
        for (name, content, expected) in cases {
            let path = write(&dir, name, content.as_bytes());
            let err = match PairReader::open(&path) {
                Err(e) => e.to_string(),
                Ok(reader) => reader
                    .into_iter()
                    .find_map(Result::err)
                    .unwrap_or_else(|| panic!("{name}: read without an error"))
                    .to_string(),
            };
            assert!(err.contains(expected), "{name}: {err}");
            assert!(
                !err.contains("alone") && !err.contains("funeral"),
                "{name} leaks post text: {err}"
            );
        }
    }

    #[test]
    fn an_empty_file_says_what_its_format_must_hold() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = PairReader::open(&write(&dir, "empty.jsonl", b""))
            .err()
            .unwrap()
            .to_string();
        assert!(jsonl.contains("one JSON object per line"), "{jsonl}");
        assert!(!jsonl.contains("header"), "{jsonl}");
        let csv = PairReader::open(&write(&dir, "empty.csv", b""))
            .err()
            .unwrap()
            .to_string();
        assert!(
            csv.contains("a header row with the columns seeker_post"),
            "{csv}"
        );
    }
}
