//! report.md.

use super::super::insights::*;
use super::findings::*;
use super::format::*;
use std::fmt::Write as _;

/// The report as Markdown.
pub fn markdown(r: &Insights) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Empathy insights\n\n{}.\n", scope_line(r));
    let _ = writeln!(s, "## Key findings\n");
    for f in findings(r) {
        let _ = writeln!(s, "- {f}");
    }
    let _ = writeln!(s, "\n## 1. How empathic are responses?\n");
    let _ = writeln!(
        s,
        "| Mechanism | none (0) | weak (1) | strong (2) | mean level |\n|---|---|---|---|---|"
    );
    for m in &r.empathy.mechanisms {
        let _ = writeln!(
            s,
            "| {} ({}) | {} | {} | {} | {} |",
            m.name,
            m.mechanism,
            with_ci(&m.shares[0], pct),
            with_ci(&m.shares[1], pct),
            with_ci(&m.shares[2], pct),
            with_ci(&m.mean_level, number)
        );
    }
    let _ = writeln!(s, "\n| Total score | interactions | share |\n|---|---|---|");
    for t in &r.empathy.total_score {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            t.total,
            t.count,
            with_ci(&t.share, pct)
        );
    }
    if !r.outcomes.is_empty() {
        let _ = writeln!(s, "\n## 2. Outcomes by level\n\nRelative change is against level 0 of the same mechanism.");
        for o in &r.outcomes {
            let _ = writeln!(s, "\n### {}\n\n| Mechanism | level | n | value | change vs level 0 |\n|---|---|---|---|---|", o.label);
            for m in &o.mechanisms {
                for l in &m.levels {
                    let _ = writeln!(
                        s,
                        "| {} | {} ({}) | {} | {} | {} |",
                        m.mechanism,
                        l.level,
                        level_name(l.level),
                        l.n,
                        with_ci(&l.value, value_format(o.is_rate)),
                        l.relative_to_level_0
                            .map_or("—".into(), |e| with_ci(&e, change))
                    );
                }
            }
        }
    }
    if let Some(rel) = &r.relationship {
        let _ = writeln!(
            s,
            "\n## 3. Relationship forming\n\n| Group | n | follow rate |\n|---|---|---|\n| low empathy (total ≤ {}) | {} | {} |\n| high empathy (total ≥ {}) | {} | {} |\n\nHigh versus low: {}.",
            rel.low_empathy_max_total,
            rel.low.n,
            with_ci(&rel.low.rate, pct),
            rel.high_empathy_min_total,
            rel.high.n,
            with_ci(&rel.high.rate, pct),
            with_ci(&rel.relative, change)
        );
    }
    if let Some(l) = &r.learning {
        let _ = writeln!(
            s,
            "\n## 4. Learning over time\n\n**{}**\n\n{} supporters with at least {} dated responses ({} responses; {} supporters had fewer).\n",
            l.summary, l.supporters, l.min_responses, l.responses, l.excluded_supporters
        );
        let _ = writeln!(s, "| Within-supporter change per doubling | total (0–6) | ER | IP | EX |\n|---|---|---|---|---|");
        for (name, sl) in [
            (
                "of the number of responses",
                &l.slope_per_doubling_responses,
            ),
            (
                "of 1 + days since the first response",
                &l.slope_per_doubling_days,
            ),
        ] {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} |",
                with_ci(&sl.total, number),
                with_ci(&sl.er, number),
                with_ci(&sl.ip, number),
                with_ci(&sl.ex, number)
            );
        }
        for (title, bins) in [
            ("n-th response", &l.by_response_number),
            ("Days since first response", &l.by_days_since_first),
        ] {
            let _ = writeln!(
                s,
                "\n| {title} | responses | supporters | mean total score |\n|---|---|---|---|"
            );
            for b in bins {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    b.label,
                    b.responses,
                    b.supporters,
                    with_ci(&b.mean_total, number)
                );
            }
        }
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(s, "\n## Warnings\n");
        for w in &r.warnings {
            let _ = writeln!(s, "- {w}");
        }
    }
    let _ = writeln!(s, "\n## Method and data\n");
    for m in method_lines(r) {
        let _ = writeln!(s, "- {m}");
    }
    let _ = writeln!(s, "\nValues are shown as estimate (95% CI low to high). Made by epitome {}. Method: {CITATION}", r.epitome_version);
    s
}
