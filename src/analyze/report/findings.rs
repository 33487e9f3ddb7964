//! The key findings in sentences, and the scope and method lines every form repeats.

use super::super::bootstrap::Estimate;
use super::super::insights::*;
use super::format::*;

/// Sentences for the key findings, shared by both reports.
pub fn findings(r: &Insights) -> Vec<String> {
    let mut out = Vec::new();
    let e = &r.empathy;
    out.push(format!(
        "{} of interactions are highly empathic (total score at least {} of 6; {}); the mean total score is {}.",
        pct(e.high_empathy_share.value),
        r.settings.high_empathy_min_total,
        ci_only(&e.high_empathy_share, pct),
        with_ci(&e.mean_total, number)
    ));
    for o in &r.outcomes {
        if !matches!(
            o.outcome.as_str(),
            "mean_likes" | "seeker_reply_rate" | "mean_seeker_replies" | "follow_rate"
        ) {
            continue;
        }
        let parts: Vec<String> = o
            .mechanisms
            .iter()
            .filter_map(|m| {
                let strong = m.levels.get(2)?;
                let rel = strong.relative_to_level_0?;
                Some(format!(
                    "{} {} ({})",
                    m.mechanism,
                    change(rel.value),
                    ci_only(&rel, change)
                ))
            })
            .collect();
        out.push(format!(
            "{} with strong versus no expression of each mechanism: {}.",
            o.label,
            parts.join(", ")
        ));
    }
    if let Some(rel) = &r.relationship {
        out.push(format!(
            "Seekers followed the supporter after {} of high-empathy interactions and {} of low-empathy ones: {} ({}).",
            pct(rel.high.rate.value),
            pct(rel.low.rate.value),
            change(rel.relative.value),
            ci_only(&rel.relative, change)
        ));
    }
    if let Some(l) = &r.learning {
        out.push(l.summary.clone());
    }
    out
}

pub(super) fn ci_only(e: &Estimate, f: fn(f64) -> String) -> String {
    match (e.low, e.high) {
        (Some(l), Some(h)) => format!("95% CI {} to {}", f(l), f(h)),
        _ => "no interval".into(),
    }
}

pub(super) fn scope_line(r: &Insights) -> String {
    let i = &r.input;
    let mut parts = vec![format!("{} interactions", i.interactions)];
    if let Some(s) = i.supporters {
        parts.push(format!("{s} supporters"));
    }
    if let Some(s) = i.seekers {
        parts.push(format!("{s} seekers"));
    }
    if let (Some(a), Some(b)) = (&i.first_date, &i.last_date) {
        parts.push(format!("from {a} to {b}"));
    }
    parts.join(", ")
}

pub(super) fn method_lines(r: &Insights) -> Vec<String> {
    let s = &r.settings;
    let i = &r.input;
    let mut lines = vec![
        format!(
            "Input: {} (SHA-256 {}); levels from {} {}.",
            i.file, i.sha256, i.levels_from, i.levels_source
        ),
        format!(
            "Intervals: {:.0}% percentile bootstrap, {} replicates, seed {}, resampling each {} (Poisson weights){}.",
            s.confidence * 100.0,
            s.bootstrap_replicates,
            s.seed,
            s.resampling_unit,
            if s.resampling_unit == "supporter" {
                ", so that a supporter's many interactions count as one source of evidence"
            } else {
                ""
            }
        ),
        format!(
            "High empathy: total score (ER + IP + EX, 0–6) at least {}; low empathy: at most {}.",
            s.high_empathy_min_total, s.low_empathy_max_total
        ),
        format!(
            "Learning over time uses supporters with at least {} dated responses; groups under {} interactions are flagged.",
            s.min_responses, s.small_group
        ),
        "Outcomes are associations on observational data, not effects of empathy: other differences between responses may explain them.".into(),
    ];
    if !i.column_mappings.is_empty() {
        lines.push(format!(
            "Column mappings: {}.",
            i.column_mappings.join(", ")
        ));
    }
    let k = &i.skipped;
    if k.rows > 0 || k.prediction_lines > 0 || k.unmatched_predictions > 0 {
        let reasons: Vec<String> = k.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        lines.push(format!(
            "Skipped (--on-error skip): {} rows{}; {} unreadable prediction lines; {} predictions without an interaction.",
            k.rows,
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
            k.prediction_lines,
            k.unmatched_predictions
        ));
    } else {
        lines.push(format!(
            "Bad rows: {} (none skipped).",
            match s.on_error {
                super::super::collect::OnError::Fail => "stop the run",
                super::super::collect::OnError::Skip => "skipped and counted",
            }
        ));
    }
    for n in &r.not_run {
        lines.push(format!("Not run: {} ({}).", n.analysis, n.reason));
    }
    lines
}
