//! Levels from a file written by `epitome predict` (JSON lines, or its CSV), indexed by id so
//! that the interactions can be joined on it.

use crate::data::records::{Body, Records};
use crate::data::{quote_value, DataError};
use crate::mechanism::{Mechanism, NUM_LEVELS};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Levels of ER, IP and EX, in [`Mechanism::ALL`] order.
pub type Levels = [u8; 3];

/// The levels of a prediction made by a model (mechanisms it lacks stay at 0).
pub fn levels_of(prediction: &crate::predict::PairPrediction) -> Levels {
    let mut levels = [0u8; 3];
    for (m, p) in &prediction.mechanisms {
        levels[m.index()] = p.level;
    }
    levels
}

struct Entry {
    levels: Levels,
    line: u64,
    /// Line of the interaction that used it; 0 while unused.
    used_by: u64,
}

/// The predictions of a file, by id.
pub struct PredictionIndex {
    path: PathBuf,
    entries: HashMap<String, Entry>,
    /// Lines left out under `--on-error skip`, with the first few errors.
    pub skipped: Vec<DataError>,
    pub skipped_count: u64,
}

/// How a join of an interaction with its prediction can fail.
pub enum JoinError {
    Missing,
    /// The id was already joined, by the interaction on this line.
    Duplicate(u64),
}

#[derive(serde::Deserialize)]
struct Level {
    level: u8,
}

#[derive(serde::Deserialize)]
struct JsonPrediction {
    id: serde_json::Value,
    #[serde(rename = "ER")]
    er: Option<Level>,
    #[serde(rename = "IP")]
    ip: Option<Level>,
    #[serde(rename = "EX")]
    ex: Option<Level>,
}

const KEEP_ERRORS: usize = 10;

impl PredictionIndex {
    /// Reads a predictions file. With `skip`, bad lines are counted and left out; without,
    /// the first one is the error.
    pub fn read(path: &Path, skip: bool) -> Result<Self, DataError> {
        let mut index = Self {
            path: path.to_path_buf(),
            entries: HashMap::new(),
            skipped: Vec::new(),
            skipped_count: 0,
        };
        let add = |index: &mut Self, result: Result<(String, Levels, u64), DataError>| {
            let outcome = result.and_then(|(id, levels, line)| index.insert(id, levels, line));
            match outcome {
                Ok(()) => Ok(()),
                Err(e) if skip => {
                    index.skipped_count += 1;
                    if index.skipped.len() < KEEP_ERRORS {
                        index.skipped.push(e);
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        let mut records = Records::open(
            path,
            "id, ER_level, IP_level, EX_level (as `epitome predict` writes them)",
        )?;
        let columns = match records.headers() {
            None => None,
            Some(_) => {
                let id = records.require_column("id", "id")?;
                let mut levels = [0usize; 3];
                for (slot, m) in levels.iter_mut().zip(Mechanism::ALL) {
                    let name = format!("{}_level", m.code());
                    *slot = records.require_column(&name, &name)?;
                }
                Some((id, levels))
            }
        };
        while let Some(record) = records.next() {
            let parsed = record.and_then(|record| match (record.body, &columns) {
                (Body::Json(text), _) => parse_json(path, record.line, text.as_bytes()),
                (Body::Csv(fields), Some((id_col, level_cols))) => {
                    let line = record.line;
                    let fields = records.utf8_fields(line, &fields)?;
                    let headers = records.headers().unwrap_or_default();
                    let mut levels = [0u8; 3];
                    for (m, &c) in level_cols.iter().enumerate() {
                        let text = fields.get(c).map(String::as_str).unwrap_or("");
                        levels[m] = parse_level(text).ok_or_else(|| DataError::Field {
                            path: path.to_path_buf(),
                            line,
                            field: headers[c].clone(),
                            message: format!("{} is not a level (0, 1 or 2)", quote_value(text)),
                        })?;
                    }
                    let id = fields.get(*id_col).cloned().unwrap_or_default();
                    Ok((id, levels, line))
                }
                (Body::Csv(_), None) => unreachable!("CSV records come with headers"),
            });
            add(&mut index, parsed)?;
        }
        Ok(index)
    }

    fn insert(&mut self, id: String, levels: Levels, line: u64) -> Result<(), DataError> {
        if let Some(first) = self.entries.get(&id) {
            return Err(DataError::Field {
                path: self.path.clone(),
                line,
                field: "id".into(),
                message: format!(
                    "duplicated id '{id}' (first on line {}); each interaction needs one prediction",
                    first.line
                ),
            });
        }
        self.entries.insert(
            id,
            Entry {
                levels,
                line,
                used_by: 0,
            },
        );
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The levels of an id, marking it used by the interaction on `line`.
    pub fn join(&mut self, id: &str, line: u64) -> Result<Levels, JoinError> {
        let entry = self.entries.get_mut(id).ok_or(JoinError::Missing)?;
        if entry.used_by != 0 {
            return Err(JoinError::Duplicate(entry.used_by));
        }
        entry.used_by = line;
        Ok(entry.levels)
    }

    /// Predictions no interaction joined: their count and the first by line, with its id.
    pub fn unused(&self) -> (u64, Option<(u64, &str)>) {
        let mut count = 0;
        let mut first: Option<(u64, &str)> = None;
        for (id, e) in &self.entries {
            if e.used_by == 0 {
                count += 1;
                if first.is_none_or(|(line, _)| e.line < line) {
                    first = Some((e.line, id));
                }
            }
        }
        (count, first)
    }
}

fn parse_level(s: &str) -> Option<u8> {
    s.trim()
        .parse::<u8>()
        .ok()
        .filter(|&l| (l as usize) < NUM_LEVELS)
}

fn parse_json(path: &Path, line: u64, bytes: &[u8]) -> Result<(String, Levels, u64), DataError> {
    let record = |message: String| DataError::Record {
        path: path.to_path_buf(),
        line,
        message,
    };
    let p: JsonPrediction = serde_json::from_slice(bytes).map_err(|e| {
        record(format!(
            "not a prediction of `epitome predict` ({{\"id\": .., \"ER\": {{\"level\": ..}}, ..}}): {}",
            e.to_string().split(" at line").next().unwrap_or_default()
        ))
    })?;
    let id = match p.id {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => {
            return Err(DataError::Field {
                path: path.to_path_buf(),
                line,
                field: "id".into(),
                message: "expected a string or a number".into(),
            })
        }
    };
    let mut levels = [0u8; 3];
    for (m, level) in Mechanism::ALL.iter().zip([p.er, p.ip, p.ex]) {
        let level = level.ok_or_else(|| DataError::Field {
            path: path.to_path_buf(),
            line,
            field: m.code().into(),
            message: "missing; analyze needs the levels of all three mechanisms (ER, IP, EX)"
                .into(),
        })?;
        if level.level as usize >= NUM_LEVELS {
            return Err(DataError::Field {
                path: path.to_path_buf(),
                line,
                field: format!("{}.level", m.code()),
                message: format!("{} is not a level (0, 1 or 2)", level.level),
            });
        }
        levels[m.index()] = level.level;
    }
    Ok((id, levels, line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    #[test]
    fn reads_both_formats_and_rejects_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("p.jsonl");
        File::create(&jsonl)
            .unwrap()
            .write_all(
                b"\xef\xbb\xbf{\"id\":\"a\",\"ER\":{\"level\":2,\"probs\":[0,0,1],\"rationales\":[]},\"IP\":{\"level\":0},\"EX\":{\"level\":1}}\n\
                  {\"id\":3,\"ER\":{\"level\":0},\"IP\":{\"level\":0},\"EX\":{\"level\":0}}\n",
            )
            .unwrap();
        let mut index = PredictionIndex::read(&jsonl, false).unwrap();
        assert_eq!(index.join("a", 5).ok(), Some([2, 0, 1]));
        assert!(matches!(index.join("a", 6), Err(JoinError::Duplicate(5))));
        assert!(matches!(index.join("b", 7), Err(JoinError::Missing)));
        assert_eq!(index.unused(), (1, Some((2, "3"))));

        let csv = dir.path().join("p.csv");
        File::create(&csv)
            .unwrap()
            .write_all(b"id,ER_level,IP_level,EX_level\n1,0,1,2\n1,0,0,0\n2,3,0,0\n")
            .unwrap();
        let err = PredictionIndex::read(&csv, false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("p.csv, line 3, field 'id'") && err.contains("first on line 2"),
            "{err}"
        );
        let index = PredictionIndex::read(&csv, true).unwrap();
        assert_eq!((index.len(), index.skipped_count), (1, 2));
        assert!(index.skipped[1]
            .to_string()
            .contains("line 4, field 'ER_level'"));
    }
}
