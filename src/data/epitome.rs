//! The EPITOME annotation release: three CSVs (one per mechanism) over the same pairs.

use super::align::{locate_spans, split_rationales, CharSpan};
use super::error::DataError;
use super::records::{Body, Records};
use crate::mechanism::{Mechanism, NUM_LEVELS};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const COLUMNS: [&str; 6] = [
    "sp_id",
    "rp_id",
    "seeker_post",
    "response_post",
    "level",
    "rationales",
];

/// One mechanism's annotation of one pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MechanismLabel {
    pub level: u8,
    /// Rationale spans located in the pair's canonical response text.
    pub spans: Vec<CharSpan>,
}

/// One (seeker post, response post) pair with its annotations for the three mechanisms.
#[derive(Clone, Debug)]
pub struct Example {
    /// 1 for a pair's first annotation, 2 for a repeated one (the release annotates a few pairs
    /// twice).
    pub occurrence: usize,
    pub sp_id: String,
    pub rp_id: String,
    pub seeker_post: String,
    pub response_post: String,
    /// Indexed by [`Mechanism::index`].
    pub labels: [MechanismLabel; 3],
}

impl Example {
    /// The identifier used in splits and outputs.
    pub fn id(&self) -> String {
        match self.occurrence {
            0 | 1 => format!("{}/{}", self.sp_id, self.rp_id),
            n => format!("{}/{}#{n}", self.sp_id, self.rp_id),
        }
    }

    pub fn label(&self, m: Mechanism) -> &MechanismLabel {
        &self.labels[m.index()]
    }
}

/// What loading found beyond the examples themselves: reported in logs and in the bundle.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadReport {
    pub pairs: usize,
    /// Rationale spans in the files, per mechanism (ER, IP, EX).
    pub spans_total: [usize; 3],
    /// Spans that could not be located in the canonical response, per mechanism.
    pub spans_not_found: [usize; 3],
    /// Rows that annotate a pair already annotated above.
    pub repeated_annotations: usize,
    /// Pairs whose three copies of the response differ beyond whitespace.
    pub responses_differing_in_words: usize,
    /// SHA-256 of each file read, by file name.
    pub file_sha256: Vec<(String, String)>,
}

/// A loaded annotation directory.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub examples: Vec<Example>,
    pub report: LoadReport,
}

struct Row {
    line: u64,
    sp_id: String,
    rp_id: String,
    seeker_post: String,
    response_post: String,
    level: u8,
    rationales: Vec<String>,
}

fn read_rows(path: &Path) -> Result<(Vec<Row>, String), DataError> {
    let hash = crate::digest::sha256_file(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let expected = || format!("a header row with the columns {}", COLUMNS.join(", "));
    let mut records = Records::open(path, &COLUMNS.join(", "))?;
    let idx: Vec<usize> = COLUMNS
        .iter()
        .map(|c| records.require_column(c, c))
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    while let Some(record) = records.next() {
        let record = record?;
        let line = record.line;
        let Body::Csv(fields) = record.body else {
            unreachable!("the annotations are read as CSV")
        };
        let fields = records.utf8_fields(line, &fields)?;
        let field = |i: usize| fields.get(idx[i]).cloned().unwrap_or_default();
        let level_text = field(4);
        let level = match level_text.trim().parse::<u8>() {
            Ok(l) if (l as usize) < NUM_LEVELS => l,
            _ => {
                return Err(DataError::Field {
                    path: path.to_path_buf(),
                    line,
                    field: "level".into(),
                    message: format!("expected 0, 1 or 2, found '{}'", level_text.trim()),
                })
            }
        };
        rows.push(Row {
            line,
            sp_id: field(0),
            rp_id: field(1),
            seeker_post: field(2),
            response_post: field(3),
            level,
            rationales: split_rationales(&field(5)),
        });
    }
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            expected: expected(),
        });
    }
    Ok((rows, hash))
}

fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// Reads the three EPITOME CSVs in `dir`, joins them on (sp_id, rp_id), picks one canonical
/// text per pair and locates every mechanism's rationale spans in it.
///
/// The canonical response is, of the three copies, the one in which the most spans are found
/// (the first copy on a tie): each mechanism's spans were cut from its own copy, and a few
/// copies differ in words, not only in whitespace.
pub fn load_epitome(dir: &Path) -> Result<Dataset, DataError> {
    let mut per_mech: Vec<(PathBuf, Vec<Row>)> = Vec::new();
    let mut report = LoadReport::default();
    for m in Mechanism::ALL {
        let path = dir.join(m.annotation_file());
        let (rows, hash) = read_rows(&path)?;
        report
            .file_sha256
            .push((m.annotation_file().to_owned(), hash));
        per_mech.push((path, rows));
    }

    // The files annotate the same pairs in the same order; a few pairs were annotated twice
    // (sometimes with different levels, as by two annotators), so rows are joined by position
    // and both annotations are kept.
    let (first_path, first_rows) = &per_mech[0];
    for (path, rows) in &per_mech[1..] {
        if rows.len() != first_rows.len() {
            return Err(DataError::Inconsistent {
                path: path.clone(),
                message: format!(
                    "has {} pairs but {} has {}; the three files must annotate the same pairs",
                    rows.len(),
                    first_path.display(),
                    first_rows.len()
                ),
            });
        }
    }

    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    let mut examples = Vec::with_capacity(first_rows.len());
    for (i, row) in first_rows.iter().enumerate() {
        let copies: Vec<&Row> = per_mech.iter().map(|(_, rows)| &rows[i]).collect();
        for ((path, _), c) in per_mech.iter().zip(&copies) {
            if (c.sp_id.as_str(), c.rp_id.as_str()) != (row.sp_id.as_str(), row.rp_id.as_str()) {
                return Err(DataError::Record {
                    path: path.clone(),
                    line: c.line,
                    message: format!(
                        "pair (sp_id {}, rp_id {}) where {} line {} has (sp_id {}, rp_id {}); the three files must list the same pairs in the same order",
                        c.sp_id, c.rp_id, first_path.display(), row.line, row.sp_id, row.rp_id
                    ),
                });
            }
        }
        let occurrence = {
            let n = seen
                .entry((row.sp_id.as_str(), row.rp_id.as_str()))
                .or_insert(0);
            *n += 1;
            *n
        };
        if occurrence > 1 {
            report.repeated_annotations += 1;
        }
        if copies
            .iter()
            .any(|c| words(&c.response_post) != words(&row.response_post))
        {
            report.responses_differing_in_words += 1;
        }
        let mut response = row.response_post.as_str();
        let mut best = 0;
        for candidate in copies.iter().map(|c| c.response_post.as_str()) {
            let found: usize = copies
                .iter()
                .map(|c| locate_spans(candidate, &c.rationales).spans.len())
                .sum();
            if found > best {
                best = found;
                response = candidate;
            }
        }
        let response = response.to_owned();
        let labels: [MechanismLabel; 3] = std::array::from_fn(|m| {
            let c = copies[m];
            let aligned = locate_spans(&response, &c.rationales);
            report.spans_total[m] += c.rationales.len();
            report.spans_not_found[m] += aligned.not_found;
            MechanismLabel {
                level: c.level,
                spans: aligned.spans,
            }
        });
        examples.push(Example {
            occurrence,
            sp_id: row.sp_id.clone(),
            rp_id: row.rp_id.clone(),
            seeker_post: row.seeker_post.clone(),
            response_post: response,
            labels,
        });
    }
    report.pairs = examples.len();
    Ok(Dataset { examples, report })
}
