//! Platform insights (`epitome analyze`): how empathic a platform's responses are, whether
//! empathy goes with more likes, replies and follows, and whether supporters become more
//! empathic with experience — the analyses of Sharma et al. (2020), section 6, on any
//! platform's interactions, with seeded bootstrap intervals.
//!
//! Data flows: [`input`] reads rows → [`collect`] attaches levels (a predictions file or a
//! model) → [`outcomes`] and [`learning`] compute statistics over resampling units
//! ([`bootstrap`]) → [`Insights`] → [`report`] renders HTML and Markdown.

pub mod bench;
pub mod bootstrap;
pub mod collect;
pub mod columns;
pub mod input;
mod insights;
pub mod job;
pub mod learning;
pub mod outcomes;
pub mod predictions;
pub mod report;
pub mod synth;
pub mod timestamp;

pub use collect::{collect, Interactions, LevelSource, OnError};
pub use columns::{parse_mapping, Column, ColumnMap};
pub use input::InteractionReader;
pub use insights::*;
pub use predictions::{levels_of, Levels, PredictionIndex};

use bootstrap::{estimates, Estimate};
use learning::Experience;
use outcomes::{at, Outcome, Sum, Thresholds};
use serde::Serialize;

/// Why an analysis cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{file}: no interactions to analyze{}", if *skipped > 0 { format!(" ({skipped} rows were skipped)") } else { String::new() })]
    NoInteractions { file: String, skipped: u64 },
    #[error("resampling by supporter needs a responder_id column")]
    NeedsResponderId,
    #[error("the model returned {returned} levels for {pairs} pairs")]
    LevelCount { returned: usize, pairs: usize },
    #[error("{model} predicts {found} mechanisms; analyze needs all three (ER, IP, EX)")]
    NeedsAllMechanisms { model: String, found: usize },
}

/// What the bootstrap resamples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ResampleUnit {
    /// Supporters when the input has responder ids, interactions otherwise.
    Auto,
    Interaction,
    Supporter,
}

#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    pub replicates: usize,
    pub seed: u64,
    pub confidence: f64,
    pub unit: ResampleUnit,
    pub thresholds: Thresholds,
    pub min_responses: usize,
    pub small_group: u64,
    pub on_error: OnError,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self {
            replicates: 1000,
            seed: 12,
            confidence: 0.95,
            unit: ResampleUnit::Auto,
            thresholds: Thresholds {
                low_max: 1,
                high_min: 4,
            },
            min_responses: 10,
            small_group: 30,
            on_error: OnError::Fail,
        }
    }
}

/// Where the data came from, for the report.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    pub file: String,
    pub sha256: String,
    pub levels_from: String,
    pub levels_source: String,
    pub column_mappings: Vec<String>,
}

/// Runs every analysis the columns allow.
pub fn analyze(
    data: &Interactions,
    options: &AnalyzeOptions,
    provenance: Provenance,
) -> Result<Insights, crate::Error> {
    if data.is_empty() {
        return Err(AnalyzeError::NoInteractions {
            file: provenance.file,
            skipped: data.skipped.rows,
        }
        .into());
    }
    let by_supporter = match options.unit {
        ResampleUnit::Auto => data.present.responder_id,
        ResampleUnit::Interaction => false,
        ResampleUnit::Supporter => {
            if !data.present.responder_id {
                return Err(AnalyzeError::NeedsResponderId.into());
            }
            true
        }
    };
    let mut warnings = Vec::new();
    let mut not_run = Vec::new();
    let t = options.thresholds;

    let units = outcomes::units(data, by_supporter);
    let table = units.table();
    let point = outcomes::statistics(&table, t);
    let reps: Vec<Vec<f64>> = units
        .replicates(options.replicates, options.seed)
        .iter()
        .map(|r| outcomes::statistics(r, t))
        .collect();
    let e = estimates(&point, &reps, options.confidence);
    if by_supporter && data.supporters < 30 {
        warnings.push(format!(
            "only {} supporters: intervals that resample supporters are rough with so few",
            data.supporters
        ));
    }

    let empathy = EmpathyLevels {
        mechanisms: crate::Mechanism::ALL
            .iter()
            .enumerate()
            .map(|(m, mech)| MechanismLevels {
                mechanism: mech.code().into(),
                name: mech.name().into(),
                counts: [0, 1, 2]
                    .map(|l| outcomes::group_size(&table, Sum::Interactions, |c| c[m] == l)),
                shares: [0, 1, 2].map(|l| e[at::level_share(m, l)]),
                mean_level: e[at::mean_level(m)],
            })
            .collect(),
        total_score: (0..=6u8)
            .map(|total| ScoreShare {
                total,
                count: outcomes::group_size(&table, Sum::Interactions, |c| {
                    c.iter().sum::<u8>() == total
                }),
                share: e[at::total_share(total as usize)],
            })
            .collect(),
        mean_total: e[at::MEAN_TOTAL],
        high_empathy_count: outcomes::group_size(&table, Sum::Interactions, |c| {
            c.iter().sum::<u8>() >= t.high_min
        }),
        high_empathy_share: e[at::HIGH_SHARE],
    };

    let p = data.present;
    let mut outcome_reports = Vec::new();
    // (mechanism, level) → the outcomes with too few interactions there, warned about once.
    let mut small_groups: std::collections::BTreeMap<(usize, u8), Vec<(Outcome, u64)>> =
        Default::default();
    for o in Outcome::ALL {
        let available = match o {
            Outcome::MeanLikes | Outcome::LikedShare => p.likes,
            Outcome::ReplyRate => p.seeker_replied,
            // With 0/1 replies the mean is the rate: shown once.
            Outcome::MeanReplies => p.seeker_replied && p.reply_counts,
            Outcome::FollowRate => p.seeker_followed,
        };
        if !available {
            continue;
        }
        let mechanisms = crate::Mechanism::ALL
            .iter()
            .enumerate()
            .map(|(m, mech)| MechanismOutcome {
                mechanism: mech.code().into(),
                levels: (0..3u8)
                    .map(|l| {
                        let n = outcomes::group_size(&table, o.denominator(), |c| c[m] == l);
                        if n < options.small_group {
                            small_groups.entry((m, l)).or_default().push((o, n));
                        }
                        LevelOutcome {
                            level: l,
                            n,
                            value: e[at::outcome(o, m, l as usize)],
                            relative_to_level_0: (l > 0).then(|| e[at::relative(o, m, l as usize)]),
                        }
                    })
                    .collect(),
            })
            .collect();
        outcome_reports.push(OutcomeByLevel {
            outcome: o.key().into(),
            label: o.label().into(),
            is_rate: o.is_rate(),
            mechanisms,
        });
    }
    for ((m, level), small) in small_groups {
        let code = crate::Mechanism::ALL[m].code();
        if small.iter().all(|&(_, n)| n == 0) {
            warnings.push(format!(
                "{code} level {level}: no interactions, so the outcomes at this level have no estimate"
            ));
        } else {
            let counts: Vec<String> = small
                .iter()
                .map(|(o, n)| format!("{} {n}", o.label().to_lowercase()))
                .collect();
            warnings.push(format!(
                "{code} level {level}: few interactions ({}), too few for the intervals to mean much",
                counts.join(", ")
            ));
        }
    }
    if !(p.likes || p.seeker_replied || p.seeker_followed) {
        not_run.push(NotRun {
            analysis: "outcomes by level".into(),
            reason: "needs a likes, seeker_replied or seeker_followed column".into(),
        });
    }

    let relationship = if p.seeker_followed {
        let group = |keep: &dyn Fn(u8) -> bool, rate: usize| RateGroup {
            n: outcomes::group_size(&table, Sum::WithFollowed, |c| keep(c.iter().sum())),
            rate: e[rate],
        };
        let low = group(&|total| total <= t.low_max, at::FOLLOW_LOW);
        let high = group(&|total| total >= t.high_min, at::FOLLOW_HIGH);
        for (name, g) in [("low", &low), ("high", &high)] {
            if g.n < options.small_group {
                warnings.push(format!(
                    "follow rate after {name} empathy: only {} interactions, too few for its interval to mean much",
                    g.n
                ));
            }
        }
        Some(Relationship {
            low_empathy_max_total: t.low_max,
            high_empathy_min_total: t.high_min,
            low,
            high,
            relative: e[at::FOLLOW_RELATIVE],
        })
    } else {
        not_run.push(NotRun {
            analysis: "relationship forming".into(),
            reason: "needs a seeker_followed column".into(),
        });
        None
    };

    let learning = if p.responder_id && p.created_at {
        let l = learn(data, options, &mut warnings);
        if l.is_none() {
            not_run.push(NotRun {
                analysis: "learning over time".into(),
                reason: format!(
                    "no supporter has at least {} dated responses (--min-responses)",
                    options.min_responses.max(2)
                ),
            });
        }
        l
    } else {
        not_run.push(NotRun {
            analysis: "learning over time".into(),
            reason: "needs responder_id and created_at columns".into(),
        });
        None
    };

    let dates: Vec<f64> = data
        .created_at
        .iter()
        .copied()
        .filter(|t| t.is_finite())
        .collect();
    let date = |f: fn(f64, f64) -> f64, init: f64| {
        (!dates.is_empty()).then(|| timestamp::format_date(dates.iter().copied().fold(init, f)))
    };
    Ok(Insights {
        epitome_version: env!("CARGO_PKG_VERSION").into(),
        input: InputSummary {
            file: provenance.file,
            sha256: provenance.sha256,
            levels_from: provenance.levels_from,
            levels_source: provenance.levels_source,
            interactions: data.len(),
            supporters: p.responder_id.then_some(data.supporters),
            seekers: p.seeker_id.then_some(data.seekers),
            first_date: date(f64::min, f64::INFINITY),
            last_date: date(f64::max, f64::NEG_INFINITY),
            columns: p,
            column_mappings: provenance.column_mappings,
            skipped: data.skipped.clone(),
        },
        settings: Settings {
            confidence: options.confidence,
            bootstrap_replicates: options.replicates,
            seed: options.seed,
            resampling_unit: if by_supporter {
                "supporter"
            } else {
                "interaction"
            }
            .into(),
            high_empathy_min_total: t.high_min,
            low_empathy_max_total: t.low_max,
            min_responses: options.min_responses,
            small_group: options.small_group,
            on_error: options.on_error,
        },
        empathy,
        outcomes: outcome_reports,
        relationship,
        learning,
        not_run,
        warnings,
    })
}

fn learn(
    data: &Interactions,
    options: &AnalyzeOptions,
    warnings: &mut Vec<String>,
) -> Option<Learning> {
    let d = learning::learning_data(data, options.min_responses);
    if d.supporters == 0 {
        return None;
    }
    let table = d.units.table();
    let point = learning::statistics(&table);
    let reps: Vec<Vec<f64>> = d
        .units
        .replicates(options.replicates, options.seed ^ 0x4C45_4152_4E49_4E47)
        .iter()
        .map(|r| learning::statistics(r))
        .collect();
    let e = estimates(&point, &reps, options.confidence);
    let slopes = |x: Experience| Slopes {
        total: e[learning::at::slope(x, 0)],
        er: e[learning::at::slope(x, 1)],
        ip: e[learning::at::slope(x, 2)],
        ex: e[learning::at::slope(x, 3)],
    };
    let mut bins = |x: Experience| -> Vec<ExperienceBin> {
        let labels: Vec<String> = match x {
            Experience::Responses => learning::COUNT_BINS
                .iter()
                .map(|&(lo, hi)| match hi {
                    Some(h) if h == lo + 1 => format!("{lo}"),
                    Some(h) => format!("{lo}–{}", h - 1),
                    None => format!("{lo}+"),
                })
                .collect(),
            Experience::Days => learning::DAY_BINS
                .iter()
                .map(|&(lo, hi)| match hi {
                    Some(h) => format!("{lo}–{h} days"),
                    None => format!("{lo}+ days"),
                })
                .collect(),
        };
        labels
            .into_iter()
            .enumerate()
            .filter_map(|(b, label)| {
                let (responses, supporters) = learning::bin_sizes(&table, x, b);
                if responses == 0 {
                    return None;
                }
                if responses < options.small_group || supporters < 10 {
                    warnings.push(format!(
                        "learning, {} bin {label}: {responses} responses from {supporters} supporters, too few for its interval to mean much",
                        match x {
                            Experience::Responses => "response-number",
                            Experience::Days => "days-since-first",
                        }
                    ));
                }
                Some(ExperienceBin {
                    label,
                    responses,
                    supporters,
                    mean_total: e[learning::at::bin_mean(x, b)],
                })
            })
            .collect()
    };
    let by_response_number = bins(Experience::Responses);
    let by_days_since_first = bins(Experience::Days);
    let slope_per_doubling_responses = slopes(Experience::Responses);
    let (verdict, mut summary) = verdict(&slope_per_doubling_responses.total, d.supporters);
    if d.supporters < 30 {
        summary.push_str(&format!(
            " Only {} supporters qualify: read this with caution.",
            d.supporters
        ));
    }
    Some(Learning {
        min_responses: options.min_responses,
        supporters: d.supporters,
        responses: d.responses,
        excluded_supporters: d.excluded_supporters,
        by_response_number,
        by_days_since_first,
        slope_per_doubling_responses,
        slope_per_doubling_days: slopes(Experience::Days),
        verdict,
        summary,
    })
}

/// The verdict in words, from the interval of the within-supporter slope.
fn verdict(slope: &Estimate, supporters: usize) -> (Trend, String) {
    let (Some(low), Some(high)) = (slope.low, slope.high) else {
        return (
            Trend::Neither,
            format!("Too little variation in experience among {supporters} supporters to estimate a trend."),
        );
    };
    let ci = format!("95% CI {} to {}", signed(low), signed(high));
    let v = slope.value;
    if low > 0.0 {
        (
            Trend::Improvement,
            format!(
                "The data show improvement: supporters express more empathy as they gain experience. Within a supporter, the total score (0–6) rises by {:.3} per doubling of their number of responses ({ci}).",
                v
            ),
        )
    } else if high < 0.0 {
        (
            Trend::Decline,
            format!(
                "The data show a decline: supporters express less empathy as they gain experience. Within a supporter, the total score (0–6) falls by {:.3} per doubling of their number of responses ({ci}).",
                -v
            ),
        )
    } else {
        (
            Trend::Neither,
            format!(
                "The data show neither improvement nor decline: within a supporter, the total score (0–6) changes by {} per doubling of their number of responses ({ci}), an interval that includes no change.",
                signed(v)
            ),
        )
    }
}

fn signed(x: f64) -> String {
    if x < 0.0 {
        format!("−{:.3}", -x)
    } else {
        format!("{x:.3}")
    }
}
