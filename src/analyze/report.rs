//! The report in three forms, all from [`Insights`]: `insights.json` (every number),
//! `report.md`, and `report.html` (one self-contained file: inline CSS and SVG, no scripts,
//! nothing loaded from elsewhere, laid out for phones as well as desktops).

use super::bootstrap::Estimate;
use super::insights::*;
use crate::atomic::write_atomically;
use std::fmt::Write as _;
use std::path::Path;

/// Writes insights.json, estimates.csv, report.md and report.html into `dir` (created if
/// needed), each file under a temporary name first, so that a file present is complete.
pub fn write_reports(insights: &Insights, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(insights)? + "\n";
    write_atomically(&dir.join("insights.json"), |w| w.write_all(json.as_bytes()))?;
    let csv = estimates_csv(insights)?;
    write_atomically(&dir.join("estimates.csv"), |w| w.write_all(&csv))?;
    let md = markdown(insights);
    write_atomically(&dir.join("report.md"), |w| w.write_all(md.as_bytes()))?;
    let html = html(insights);
    write_atomically(&dir.join("report.html"), |w| w.write_all(html.as_bytes()))
}

const CITATION: &str = "Ashish Sharma, Adam S. Miner, David C. Atkins and Tim Althoff. 2020. A Computational Approach to Understanding Empathy Expressed in Text-Based Mental Health Support. In Proceedings of EMNLP 2020.";

fn pct(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let p = x * 100.0;
    if p.abs() >= 10.0 || p == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// A relative change: "+45%" / "−12%".
fn change(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let p = x * 100.0;
    if p < 0.0 {
        format!("−{:.0}%", -p)
    } else {
        format!("+{p:.0}%")
    }
}

fn number(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x < 0.0 {
        format!("−{:.2}", -x)
    } else {
        format!("{x:.2}")
    }
}

/// "value (low to high)" with the given formatter.
fn with_ci(e: &Estimate, f: fn(f64) -> String) -> String {
    match (e.low, e.high) {
        (Some(l), Some(h)) => format!("{} ({} to {})", f(e.value), f(l), f(h)),
        _ => format!("{} (no interval)", f(e.value)),
    }
}

fn value_format(rate: bool) -> fn(f64) -> String {
    if rate {
        pct
    } else {
        number
    }
}

fn level_name(level: u8) -> &'static str {
    ["none", "weak", "strong"][level as usize]
}

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

fn ci_only(e: &Estimate, f: fn(f64) -> String) -> String {
    match (e.low, e.high) {
        (Some(l), Some(h)) => format!("95% CI {} to {}", f(l), f(h)),
        _ => "no interval".into(),
    }
}

fn scope_line(r: &Insights) -> String {
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

fn method_lines(r: &Insights) -> Vec<String> {
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
                super::collect::OnError::Fail => "stop the run",
                super::collect::OnError::Skip => "skipped and counted",
            }
        ));
    }
    for n in &r.not_run {
        lines.push(format!("Not run: {} ({}).", n.analysis, n.reason));
    }
    lines
}

// ---------------------------------------------------------------- CSV

/// One row of estimates.csv.
struct Row<'a> {
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
        Some(v) if v.is_finite() => format!("{}", super::bootstrap::round(v)),
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

// ---------------------------------------------------------------- Markdown

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

// ---------------------------------------------------------------- HTML

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const LEVEL_COLORS: [&str; 3] = ["#d4d4d8", "#93c5fd", "#1d4ed8"];
const VIEW_W: f64 = 400.0;

/// Stacked bars of the level shares, one per mechanism.
fn svg_levels(mechs: &[MechanismLevels]) -> String {
    let (left, right, row) = (34.0, VIEW_W - 4.0, 30.0);
    let height = row * mechs.len() as f64 + 30.0;
    let mut s = format!(
        r#"<svg viewBox="0 0 {VIEW_W} {height}" role="img" aria-label="Share of each level per mechanism">"#
    );
    for (k, m) in mechs.iter().enumerate() {
        let y = k as f64 * row + 4.0;
        let _ = write!(
            s,
            r#"<text x="0" y="{}" class="lab">{}</text>"#,
            y + 16.0,
            m.mechanism
        );
        let mut x = left;
        for (l, color) in LEVEL_COLORS.iter().enumerate() {
            let w = (m.shares[l].value.max(0.0)) * (right - left);
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="22" fill="{color}"><title>{} level {l}: {}</title></rect>"#,
                m.mechanism,
                pct(m.shares[l].value)
            );
            if w > 30.0 {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" class="{}" text-anchor="middle">{}</text>"#,
                    x + w / 2.0,
                    y + 15.5,
                    if l == 2 { "inv" } else { "val" },
                    pct(m.shares[l].value)
                );
            }
            x += w;
        }
    }
    let y = row * mechs.len() as f64 + 14.0;
    for (l, color) in LEVEL_COLORS.iter().enumerate() {
        let x = left + l as f64 * 90.0;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}" class="lab">{} ({l})</text>"#,
            y - 10.0,
            x + 16.0,
            y,
            level_name(l as u8)
        );
    }
    s + "</svg>"
}

/// Vertical bars with interval whiskers.
fn svg_bars(bars: &[(String, Estimate)], f: fn(f64) -> String, label: &str) -> String {
    let (top, bottom, left) = (18.0, 170.0, 6.0);
    let max = bars
        .iter()
        .map(|(_, e)| e.high.unwrap_or(e.value))
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let slot = (VIEW_W - left) / bars.len() as f64;
    let y_of = |v: f64| bottom - (v.max(0.0) / max) * (bottom - top);
    let mut s = format!(
        r#"<svg viewBox="0 0 {VIEW_W} 200" role="img" aria-label="{}">"#,
        esc(label)
    );
    let _ = write!(
        s,
        r#"<line x1="0" x2="{VIEW_W}" y1="{bottom}" y2="{bottom}" class="axis"/>"#
    );
    for (k, (name, e)) in bars.iter().enumerate() {
        let cx = left + slot * (k as f64 + 0.5);
        let w = (slot * 0.6).min(60.0);
        if e.value.is_finite() {
            let y = y_of(e.value);
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                cx - w / 2.0,
                bottom - y,
                LEVEL_COLORS[1],
                esc(name),
                with_ci(e, f)
            );
            if let (Some(lo), Some(hi)) = (e.low, e.high) {
                let _ = write!(
                    s,
                    r#"<path d="M{cx:.1} {:.1}V{:.1}M{:.1} {:.1}h10M{:.1} {:.1}h10" class="ci"/>"#,
                    y_of(lo),
                    y_of(hi),
                    cx - 5.0,
                    y_of(lo),
                    cx - 5.0,
                    y_of(hi)
                );
            }
            let _ = write!(
                s,
                r#"<text x="{cx:.1}" y="{:.1}" class="val" text-anchor="middle">{}</text>"#,
                y_of(e.high.unwrap_or(e.value)) - 4.0,
                f(e.value)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{cx:.1}" y="{}" class="lab" text-anchor="middle">{}</text>"#,
            bottom + 18.0,
            esc(name)
        );
    }
    s + "</svg>"
}

/// Dots with interval whiskers on a horizontal axis of relative change, zero marked.
fn svg_forest(rows: &[(String, Estimate)], label: &str) -> String {
    let (left, right, row) = (92.0, VIEW_W - 10.0, 24.0);
    let mut lo = 0.0f64;
    let mut hi = 0.0f64;
    for (_, e) in rows {
        for v in [Some(e.value), e.low, e.high].into_iter().flatten() {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    let pad = ((hi - lo) * 0.08).max(0.02);
    let (lo, hi) = (lo - pad, hi + pad);
    let x_of = |v: f64| left + (v - lo) / (hi - lo) * (right - left);
    let height = row * rows.len() as f64 + 28.0;
    let mut s = format!(
        r#"<svg viewBox="0 0 {VIEW_W} {height}" role="img" aria-label="{}">"#,
        esc(label)
    );
    let zero = x_of(0.0);
    let _ = write!(
        s,
        r#"<line x1="{zero:.1}" x2="{zero:.1}" y1="0" y2="{:.1}" class="zero"/>"#,
        height - 22.0
    );
    for (k, (name, e)) in rows.iter().enumerate() {
        let y = k as f64 * row + 14.0;
        let _ = write!(
            s,
            r#"<text x="0" y="{:.1}" class="lab">{}</text>"#,
            y + 4.0,
            esc(name)
        );
        if let (Some(l), Some(h)) = (e.low, e.high) {
            let _ = write!(
                s,
                r#"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="ci"/>"#,
                x_of(l),
                x_of(h)
            );
        }
        if e.value.is_finite() {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{y:.1}" r="4.5" fill="{}"><title>{}: {}</title></circle>"#,
                x_of(e.value),
                LEVEL_COLORS[2],
                esc(name),
                with_ci(e, change)
            );
        }
    }
    let axis_y = height - 8.0;
    // Zero, and the extremes where they do not crowd it.
    let mut ticks = vec![0.0];
    for v in [lo + pad, hi - pad] {
        if (x_of(v) - zero).abs() > 44.0 {
            ticks.push(v);
        }
    }
    for v in ticks {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{axis_y:.1}" class="lab" text-anchor="middle">{}</text>"#,
            x_of(v),
            change(v)
        );
    }
    s + "</svg>"
}

/// A line through binned means with interval whiskers.
fn svg_line(bins: &[ExperienceBin], label: &str) -> String {
    let (top, bottom, left, right) = (14.0, 160.0, 30.0, VIEW_W - 10.0);
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for b in bins {
        for v in [
            Some(b.mean_total.value),
            b.mean_total.low,
            b.mean_total.high,
        ]
        .into_iter()
        .flatten()
        {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if !lo.is_finite() {
        return String::new();
    }
    let pad = ((hi - lo) * 0.1).max(0.1);
    let (lo, hi) = ((lo - pad).max(0.0), (hi + pad).min(6.0));
    let y_of = |v: f64| bottom - (v - lo) / (hi - lo) * (bottom - top);
    let slot = (right - left) / bins.len().max(1) as f64;
    let x_of = |k: usize| left + slot * (k as f64 + 0.5);
    let mut s = format!(
        r#"<svg viewBox="0 0 {VIEW_W} 200" role="img" aria-label="{}">"#,
        esc(label)
    );
    for v in [lo, (lo + hi) / 2.0, hi] {
        let _ = write!(
            s,
            r#"<text x="0" y="{:.1}" class="lab">{v:.1}</text><line x1="{left}" x2="{right}" y1="{:.1}" y2="{:.1}" class="grid"/>"#,
            y_of(v) + 4.0,
            y_of(v),
            y_of(v)
        );
    }
    let points: Vec<String> = bins
        .iter()
        .enumerate()
        .filter(|(_, b)| b.mean_total.value.is_finite())
        .map(|(k, b)| format!("{:.1},{:.1}", x_of(k), y_of(b.mean_total.value)))
        .collect();
    let _ = write!(
        s,
        r#"<polyline points="{}" class="trend"/>"#,
        points.join(" ")
    );
    for (k, b) in bins.iter().enumerate() {
        let x = x_of(k);
        if let (Some(l), Some(h)) = (b.mean_total.low, b.mean_total.high) {
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" class="ci"/>"#,
                y_of(l),
                y_of(h)
            );
        }
        if b.mean_total.value.is_finite() {
            let _ = write!(
                s,
                r#"<circle cx="{x:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}: {} ({} responses)</title></circle>"#,
                y_of(b.mean_total.value),
                LEVEL_COLORS[2],
                esc(&b.label),
                with_ci(&b.mean_total, number),
                b.responses
            );
        }
        let short = b.label.trim_end_matches(" days");
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{}" class="lab" text-anchor="middle">{}</text>"#,
            bottom + 18.0,
            esc(short)
        );
    }
    s + "</svg>"
}

/// A table cell: text, or a value with its interval in small type beneath it (narrow
/// enough for four columns on a phone).
enum Cell {
    Text(String),
    Value(Estimate, fn(f64) -> String),
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_owned())
    }
}

impl Cell {
    fn html(&self) -> String {
        match self {
            Cell::Text(t) => esc(t),
            Cell::Value(e, f) => match (e.low, e.high) {
                (Some(l), Some(h)) => format!(
                    r#"{}<small class="ci">{} to {}</small>"#,
                    esc(&f(e.value)),
                    esc(&f(l)),
                    esc(&f(h))
                ),
                _ => esc(&f(e.value)),
            },
        }
    }
}

fn table(head: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut s = String::from(r#"<div class="scroll"><table><thead><tr>"#);
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", c.html());
        }
        s.push_str("</tr>");
    }
    s + "</tbody></table></div>"
}

const STYLE: &str = "
:root{color-scheme:light;--ink:#18181b;--muted:#52525b;--line:#e4e4e7;--accent:#1d4ed8}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);background:#fff}
main{max-width:52rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid var(--line);padding-bottom:.25rem}
h3{font-size:1.05rem;margin-top:1.5rem}
.lede{color:var(--muted)}
.findings li{margin:.35rem 0}
.verdict{background:#eff6ff;border-left:4px solid var(--accent);padding:.6rem .8rem;margin:1rem 0}
.warn{background:#fffbeb;border-left:4px solid #d97706;padding:.4rem .8rem;font-size:.9rem}
svg{width:100%;max-width:34rem;height:auto;display:block;margin:.5rem 0}
svg .lab{font-size:12px;fill:var(--ink)}svg .val{font-size:11px;fill:var(--ink)}svg .inv{font-size:11px;fill:#fff}
svg .axis{stroke:#a1a1aa}svg .grid{stroke:var(--line)}svg .zero{stroke:#a1a1aa;stroke-dasharray:3 3}
svg .ci{stroke:var(--ink);stroke-width:1.5;fill:none}svg .trend{stroke:var(--accent);stroke-width:2;fill:none}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;font-size:.875rem;min-width:100%}
th,td{padding:.3rem .5rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top;white-space:nowrap}
td .ci{display:block;color:var(--muted);font-size:.75rem}
th{background:#fafafa}
.method li{color:var(--muted);font-size:.9rem;overflow-wrap:anywhere}
footer{color:var(--muted);font-size:.8rem;margin:2rem 0}
@media (max-width:480px){main{padding:.75rem}table{font-size:.8rem}th,td{padding:.25rem .35rem}}
";

/// The report as one self-contained HTML page.
pub fn html(r: &Insights) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Empathy insights</title><style>{STYLE}</style></head><body><main>"#
    );
    let _ = write!(
        s,
        r#"<h1>Empathy insights</h1><p class="lede">{}.</p>"#,
        esc(&scope_line(r))
    );
    s.push_str(r#"<section id="findings"><h2>Key findings</h2><ul class="findings">"#);
    for f in findings(r) {
        let _ = write!(s, "<li>{}</li>", esc(&f));
    }
    s.push_str("</ul></section>");

    let e = &r.empathy;
    s.push_str(r#"<section id="levels"><h2>1. How empathic are responses?</h2><p>Share of responses at each level of Emotional Reactions (ER), Interpretations (IP) and Explorations (EX).</p>"#);
    s.push_str(&svg_levels(&e.mechanisms));
    let rows: Vec<Vec<Cell>> = e
        .mechanisms
        .iter()
        .map(|m| {
            vec![
                m.mechanism.clone().into(),
                Cell::Value(m.shares[0], pct),
                Cell::Value(m.shares[1], pct),
                Cell::Value(m.shares[2], pct),
                Cell::Value(m.mean_level, number),
            ]
        })
        .collect();
    s.push_str(&table(
        &[
            "Mechanism",
            "none (0)",
            "weak (1)",
            "strong (2)",
            "mean level",
        ],
        &rows,
    ));
    let _ = write!(
        s,
        "<h3>Total score (ER + IP + EX, 0–6)</h3><p>{} of interactions score at least {} ({}).</p>",
        pct(e.high_empathy_share.value),
        r.settings.high_empathy_min_total,
        esc(&ci_only(&e.high_empathy_share, pct))
    );
    let bars: Vec<(String, Estimate)> = e
        .total_score
        .iter()
        .map(|t| (t.total.to_string(), t.share))
        .collect();
    s.push_str(&svg_bars(
        &bars,
        pct,
        "Share of interactions by total score",
    ));
    let rows: Vec<Vec<Cell>> = e
        .total_score
        .iter()
        .map(|t| {
            vec![
                t.total.to_string().into(),
                t.count.to_string().into(),
                Cell::Value(t.share, pct),
            ]
        })
        .collect();
    s.push_str(&table(&["Total score", "Interactions", "Share"], &rows));
    s.push_str("</section>");

    if !r.outcomes.is_empty() {
        s.push_str(r#"<section id="outcomes"><h2>2. Outcomes by level</h2><p>Each dot is the change against responses with none of that mechanism (level 0), with its 95% interval.</p>"#);
        for o in &r.outcomes {
            let _ = write!(s, "<h3>{}</h3>", esc(&o.label));
            let mut forest = Vec::new();
            let mut rows = Vec::new();
            for m in &o.mechanisms {
                for l in &m.levels {
                    if let Some(rel) = l.relative_to_level_0 {
                        forest.push((format!("{} {}", m.mechanism, level_name(l.level)), rel));
                    }
                    rows.push(vec![
                        format!("{} {} ({})", m.mechanism, l.level, level_name(l.level)).into(),
                        l.n.to_string().into(),
                        Cell::Value(l.value, value_format(o.is_rate)),
                        l.relative_to_level_0
                            .map_or("—".into(), |e| Cell::Value(e, change)),
                    ]);
                }
            }
            s.push_str(&svg_forest(
                &forest,
                &format!("{}: change versus level 0", o.label),
            ));
            s.push_str(&table(&["Level", "n", "Value", "vs level 0"], &rows));
        }
        s.push_str("</section>");
    }

    if let Some(rel) = &r.relationship {
        let _ = write!(
            s,
            r#"<section id="relationship"><h2>3. Relationship forming</h2><p>Follow rate after low-empathy (total ≤ {}) and high-empathy (total ≥ {}) interactions. High versus low: <strong>{}</strong>.</p>"#,
            rel.low_empathy_max_total,
            rel.high_empathy_min_total,
            esc(&with_ci(&rel.relative, change))
        );
        let bars = vec![
            (
                format!("low (≤ {})", rel.low_empathy_max_total),
                rel.low.rate,
            ),
            (
                format!("high (≥ {})", rel.high_empathy_min_total),
                rel.high.rate,
            ),
        ];
        s.push_str(&svg_bars(
            &bars,
            pct,
            "Follow rate after low and high empathy",
        ));
        let rows = vec![
            vec![
                format!("low (total ≤ {})", rel.low_empathy_max_total).into(),
                rel.low.n.to_string().into(),
                Cell::Value(rel.low.rate, pct),
            ],
            vec![
                format!("high (total ≥ {})", rel.high_empathy_min_total).into(),
                rel.high.n.to_string().into(),
                Cell::Value(rel.high.rate, pct),
            ],
        ];
        s.push_str(&table(&["Empathy", "Interactions", "Follow rate"], &rows));
        s.push_str("</section>");
    }

    if let Some(l) = &r.learning {
        let _ = write!(
            s,
            r#"<section id="learning"><h2>4. Learning over time</h2><p class="verdict">{}</p><p>{} supporters with at least {} dated responses ({} responses); {} supporters had fewer and are left out of this section.</p>"#,
            esc(&l.summary),
            l.supporters,
            l.min_responses,
            l.responses,
            l.excluded_supporters
        );
        s.push_str("<h3>Mean total score by n-th response</h3>");
        s.push_str(&svg_line(
            &l.by_response_number,
            "Mean total score by n-th response",
        ));
        s.push_str("<h3>Mean total score by days since the first response</h3>");
        s.push_str(&svg_line(
            &l.by_days_since_first,
            "Mean total score by days since first response",
        ));
        for (name, bins) in [
            ("n-th response", &l.by_response_number),
            ("Days since first", &l.by_days_since_first),
        ] {
            let rows: Vec<Vec<Cell>> = bins
                .iter()
                .map(|b| {
                    vec![
                        b.label.as_str().into(),
                        b.responses.to_string().into(),
                        b.supporters.to_string().into(),
                        Cell::Value(b.mean_total, number),
                    ]
                })
                .collect();
            s.push_str(&table(
                &[name, "Responses", "Supporters", "Mean total"],
                &rows,
            ));
        }
        s.push_str("<h3>Within-supporter change per doubling of experience</h3>");
        let rows: Vec<Vec<Cell>> = [
            ("responses", &l.slope_per_doubling_responses),
            ("1 + days", &l.slope_per_doubling_days),
        ]
        .iter()
        .map(|(n, sl)| {
            vec![
                n.to_string().into(),
                Cell::Value(sl.total, number),
                Cell::Value(sl.er, number),
                Cell::Value(sl.ip, number),
                Cell::Value(sl.ex, number),
            ]
        })
        .collect();
        s.push_str(&table(
            &["Doubling of", "Total (0–6)", "ER", "IP", "EX"],
            &rows,
        ));
        s.push_str("</section>");
    }

    if !r.warnings.is_empty() {
        s.push_str(r#"<section id="warnings"><h2>Warnings</h2>"#);
        for w in &r.warnings {
            let _ = write!(s, r#"<p class="warn">{}</p>"#, esc(w));
        }
        s.push_str("</section>");
    }
    s.push_str(r#"<section id="method"><h2>Method and data</h2><ul class="method">"#);
    for m in method_lines(r) {
        let _ = write!(s, "<li>{}</li>", esc(&m));
    }
    let _ = writeln!(
        s,
        "</ul></section><footer>Values are estimate (95% CI low to high). Made by epitome {}. Method: {}</footer></main></body></html>",
        esc(&r.epitome_version),
        esc(CITATION)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::collect::Interactions;
    use crate::analyze::{analyze, AnalyzeOptions, Provenance};

    fn insights(file: &str) -> Insights {
        let data = Interactions {
            levels: vec![[0, 0, 0], [2, 2, 1], [1, 0, 2], [2, 2, 2]],
            responder: vec![crate::analyze::collect::NO_RESPONDER; 4],
            created_at: vec![f64::NAN; 4],
            likes: vec![0.0, 3.0, 1.0, 5.0],
            replied: vec![f64::NAN; 4],
            followed: vec![0.0, 1.0, 0.0, 1.0],
            present: crate::analyze::collect::Present {
                likes: true,
                seeker_followed: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let options = AnalyzeOptions {
            replicates: 100,
            ..Default::default()
        };
        let provenance = Provenance {
            file: file.into(),
            ..Default::default()
        };
        analyze(&data, &options, provenance).unwrap()
    }

    #[test]
    fn text_from_the_user_is_escaped_in_html() {
        let html = html(&insights("<script>alert(1)</script>&.csv"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;.csv"));
    }

    #[test]
    fn estimates_csv_has_a_row_per_number_with_its_interval() {
        let r = insights("in.csv");
        let csv = String::from_utf8(estimates_csv(&r).unwrap()).unwrap();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("analysis,statistic,mechanism,level,group,n,value,ci_low,ci_high")
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        // 3 × (3 shares + mean) level rows, 7 shares + mean + high share of the total score,
        // 3 outcomes × 3 mechanisms × (3 values + 2 relative changes), 3 follow rows.
        assert_eq!(rows.len(), 12 + 9 + 45 + 3);
        let high = rows.iter().find(|r| r[1] == "high_empathy_share").unwrap();
        assert_eq!((high[4], high[5], high[6]), ("total >= 4", "2", "0.5"));
        let likes_er2 = rows
            .iter()
            .find(|r| r[1] == "mean_likes" && r[2] == "ER" && r[3] == "2")
            .unwrap();
        assert_eq!((likes_er2[5], likes_er2[6]), ("2", "4"));
        assert!(rows.iter().all(|r| r.len() == 9));
    }
}
