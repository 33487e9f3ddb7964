//! report.html: one self-contained page, inline CSS and SVG, laid out for phones too.

use super::super::bootstrap::Estimate;
use super::super::insights::*;
use super::findings::*;
use super::format::*;
use super::svg::*;
use std::fmt::Write as _;

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
