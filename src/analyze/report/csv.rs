//! estimates.csv: every number of the report as one flat table.

use super::super::bootstrap::Estimate;
use super::super::insights::*;

/// One row of estimates.csv.
pub(super) struct Row<'a> {
    analysis: &'a str,
    statistic: String,
    mechanism: &'a str,
    level: String,
    group: String,
    n: u64,
    estimate: Estimate,
}

/// Every estimate of the report as one flat table (one row per number, with its interval),
/// for spreadsheets and data frames.
pub fn estimates_csv(r: &Insights) -> std::io::Result<Vec<u8>> {
    let mut rows: Vec<Row> = Vec::new();
    let e = &r.empathy;
    for m in &e.mechanisms {
        for level in 0..3u8 {
            rows.push(Row {
                analysis: "levels",
                statistic: "share".into(),
                mechanism: &m.mechanism,
                level: level.to_string(),
                group: String::new(),
                n: m.counts[level as usize],
                estimate: m.shares[level as usize],
            });
        }
        rows.push(Row {
            analysis: "levels",
            statistic: "mean_level".into(),
            mechanism: &m.mechanism,
            level: String::new(),
            group: String::new(),
            n: r.input.interactions as u64,
            estimate: m.mean_level,
        });
    }
    for t in &e.total_score {
        rows.push(Row {
            analysis: "total_score",
            statistic: "share".into(),
            mechanism: "",
            level: t.total.to_string(),
            group: String::new(),
            n: t.count,
            estimate: t.share,
        });
    }
    rows.push(Row {
        analysis: "total_score",
        statistic: "mean".into(),
        mechanism: "",
        level: String::new(),
        group: String::new(),
        n: r.input.interactions as u64,
        estimate: e.mean_total,
    });
    rows.push(Row {
        analysis: "total_score",
        statistic: "high_empathy_share".into(),
        mechanism: "",
        level: String::new(),
        group: format!("total >= {}", r.settings.high_empathy_min_total),
        n: e.high_empathy_count,
        estimate: e.high_empathy_share,
    });
    for o in &r.outcomes {
        for m in &o.mechanisms {
            for l in &m.levels {
                rows.push(Row {
                    analysis: "outcomes",
                    statistic: o.outcome.clone(),
                    mechanism: &m.mechanism,
                    level: l.level.to_string(),
                    group: String::new(),
                    n: l.n,
                    estimate: l.value,
                });
                if let Some(rel) = l.relative_to_level_0 {
                    rows.push(Row {
                        analysis: "outcomes",
                        statistic: format!("{}_relative_to_level_0", o.outcome),
                        mechanism: &m.mechanism,
                        level: l.level.to_string(),
                        group: String::new(),
                        n: l.n,
                        estimate: rel,
                    });
                }
            }
        }
    }
    if let Some(rel) = &r.relationship {
        for (group, g) in [
            (
                format!("low: total <= {}", rel.low_empathy_max_total),
                &rel.low,
            ),
            (
                format!("high: total >= {}", rel.high_empathy_min_total),
                &rel.high,
            ),
        ] {
            rows.push(Row {
                analysis: "relationship",
                statistic: "follow_rate".into(),
                mechanism: "",
                level: String::new(),
                group,
                n: g.n,
                estimate: g.rate,
            });
        }
        rows.push(Row {
            analysis: "relationship",
            statistic: "follow_rate_relative_high_vs_low".into(),
            mechanism: "",
            level: String::new(),
            group: String::new(),
            n: rel.low.n + rel.high.n,
            estimate: rel.relative,
        });
    }
    if let Some(l) = &r.learning {
        for (experience, bins) in [
            ("response_number", &l.by_response_number),
            ("days_since_first", &l.by_days_since_first),
        ] {
            for b in bins {
                rows.push(Row {
                    analysis: "learning",
                    statistic: format!("mean_total_by_{experience}"),
                    mechanism: "",
                    level: String::new(),
                    group: b.label.clone(),
                    n: b.responses,
                    estimate: b.mean_total,
                });
            }
        }
        for (experience, slopes) in [
            ("responses", &l.slope_per_doubling_responses),
            ("days", &l.slope_per_doubling_days),
        ] {
            for (mechanism, estimate) in [
                ("", slopes.total),
                ("ER", slopes.er),
                ("IP", slopes.ip),
                ("EX", slopes.ex),
            ] {
                rows.push(Row {
                    analysis: "learning",
                    statistic: format!("slope_per_doubling_{experience}"),
                    mechanism,
                    level: String::new(),
                    group: if mechanism.is_empty() {
                        "total score".into()
                    } else {
                        "level".into()
                    },
                    n: l.responses as u64,
                    estimate,
                });
            }
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "analysis",
        "statistic",
        "mechanism",
        "level",
        "group",
        "n",
        "value",
        "ci_low",
        "ci_high",
    ])?;
    let num = |x: Option<f64>| match x {
        Some(v) if v.is_finite() => format!("{}", super::super::bootstrap::round(v)),
        _ => String::new(),
    };
    for row in rows {
        w.write_record([
            row.analysis.to_owned(),
            row.statistic,
            row.mechanism.to_owned(),
            row.level,
            row.group,
            row.n.to_string(),
            num(Some(row.estimate.value)),
            num(row.estimate.low),
            num(row.estimate.high),
        ])?;
    }
    w.into_inner().map_err(|e| e.into_error())
}
