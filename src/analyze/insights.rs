//! Everything the report says, as data: `insights.json` is this, serialized, and the HTML and
//! Markdown reports are rendered from it alone.

use super::bootstrap::Estimate;
use super::collect::{OnError, Present, SkipSummary};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Insights {
    pub epitome_version: String,
    pub input: InputSummary,
    pub settings: Settings,
    pub empathy: EmpathyLevels,
    /// Outcomes by level; empty when the input has none of the outcome columns.
    pub outcomes: Vec<OutcomeByLevel>,
    pub relationship: Option<Relationship>,
    pub learning: Option<Learning>,
    /// Analyses that did not run, and why.
    pub not_run: Vec<NotRun>,
    /// Groups too small for their intervals to mean much, and other caveats.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InputSummary {
    pub file: String,
    pub sha256: String,
    /// "predictions" or "model".
    pub levels_from: String,
    /// The predictions file or model directory.
    pub levels_source: String,
    pub interactions: usize,
    /// Distinct responder ids (None without the column).
    pub supporters: Option<usize>,
    pub seekers: Option<usize>,
    /// First and last `created_at` (UTC dates).
    pub first_date: Option<String>,
    pub last_date: Option<String>,
    pub columns: Present,
    pub column_mappings: Vec<String>,
    pub skipped: SkipSummary,
}

#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub confidence: f64,
    pub bootstrap_replicates: usize,
    pub seed: u64,
    /// What the bootstrap resamples: "supporter" or "interaction".
    pub resampling_unit: String,
    pub high_empathy_min_total: u8,
    pub low_empathy_max_total: u8,
    pub min_responses: usize,
    /// Groups with fewer interactions than this are flagged.
    pub small_group: u64,
    pub on_error: OnError,
}

#[derive(Clone, Debug, Serialize)]
pub struct MechanismLevels {
    pub mechanism: String,
    pub name: String,
    pub counts: [u64; 3],
    pub shares: [Estimate; 3],
    pub mean_level: Estimate,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScoreShare {
    pub total: u8,
    pub count: u64,
    pub share: Estimate,
}

#[derive(Clone, Debug, Serialize)]
pub struct EmpathyLevels {
    pub mechanisms: Vec<MechanismLevels>,
    /// Distribution of the total score, the sum of the three levels (0–6).
    pub total_score: Vec<ScoreShare>,
    pub mean_total: Estimate,
    pub high_empathy_count: u64,
    pub high_empathy_share: Estimate,
}

#[derive(Clone, Debug, Serialize)]
pub struct LevelOutcome {
    pub level: u8,
    /// Interactions with a value of the outcome.
    pub n: u64,
    pub value: Estimate,
    /// value / value at level 0 − 1 (0.45 reads "45% more"); absent for level 0.
    pub relative_to_level_0: Option<Estimate>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MechanismOutcome {
    pub mechanism: String,
    pub levels: Vec<LevelOutcome>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OutcomeByLevel {
    pub outcome: String,
    pub label: String,
    /// Shares are fractions (0.25 = 25%); means are counts.
    pub is_rate: bool,
    pub mechanisms: Vec<MechanismOutcome>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RateGroup {
    pub n: u64,
    pub rate: Estimate,
}

#[derive(Clone, Debug, Serialize)]
pub struct Relationship {
    pub low_empathy_max_total: u8,
    pub high_empathy_min_total: u8,
    pub low: RateGroup,
    pub high: RateGroup,
    /// high / low − 1.
    pub relative: Estimate,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExperienceBin {
    pub label: String,
    pub responses: u64,
    pub supporters: u64,
    pub mean_total: Estimate,
}

#[derive(Clone, Debug, Serialize)]
pub struct Slopes {
    /// Change in the total score (0–6) per doubling of experience.
    pub total: Estimate,
    /// Change in each mechanism's level (0–2) per doubling.
    #[serde(rename = "ER")]
    pub er: Estimate,
    #[serde(rename = "IP")]
    pub ip: Estimate,
    #[serde(rename = "EX")]
    pub ex: Estimate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trend {
    Improvement,
    Decline,
    Neither,
}

#[derive(Clone, Debug, Serialize)]
pub struct Learning {
    pub min_responses: usize,
    pub supporters: usize,
    pub responses: usize,
    pub excluded_supporters: usize,
    pub by_response_number: Vec<ExperienceBin>,
    pub by_days_since_first: Vec<ExperienceBin>,
    /// Within-supporter slopes per doubling of the n-th response.
    pub slope_per_doubling_responses: Slopes,
    /// Within-supporter slopes per doubling of (1 + days since the first response).
    pub slope_per_doubling_days: Slopes,
    pub verdict: Trend,
    pub summary: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct NotRun {
    pub analysis: String,
    pub reason: String,
}
