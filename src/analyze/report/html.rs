//! report.html: one self-contained page, inline CSS and SVG, laid out for phones too.

use super::super::insights::Insights;
use super::document::*;
use super::svg::*;
use std::fmt::Write as _;

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn cell_html(cell: &Cell) -> String {
    match cell {
        Cell::Text(t) => esc(t),
        // The interval goes in small type beneath the value, narrow enough for four columns
        // on a phone.
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

fn table_html(table: &Table) -> String {
    let mut s = String::from(r#"<div class="scroll"><table><thead><tr>"#);
    for h in &table.head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for r in &table.rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", cell_html(c));
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
    let doc = document(r);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{}</title><style>{STYLE}</style></head><body><main>"#,
        doc.title
    );
    let _ = write!(
        s,
        r#"<h1>{}</h1><p class="lede">{}</p>"#,
        doc.title,
        esc(&doc.scope)
    );
    for section in &doc.sections {
        let _ = write!(
            s,
            r#"<section id="{}"><h2>{}</h2>"#,
            section.id,
            esc(&section.title)
        );
        for block in &section.blocks {
            match block {
                Block::Paragraph(text) => {
                    let _ = write!(s, "<p>{}</p>", esc(text));
                }
                Block::Verdict(text) => {
                    let _ = write!(s, r#"<p class="verdict">{}</p>"#, esc(text));
                }
                Block::Subheading(text) => {
                    let _ = write!(s, "<h3>{}</h3>", esc(text));
                }
                Block::List(kind, items) => {
                    let class = match kind {
                        ListKind::Findings => "findings",
                        ListKind::Method => "method",
                    };
                    let _ = write!(s, r#"<ul class="{class}">"#);
                    for item in items {
                        let _ = write!(s, "<li>{}</li>", esc(item));
                    }
                    s.push_str("</ul>");
                }
                Block::Warning(text) => {
                    let _ = write!(s, r#"<p class="warn">{}</p>"#, esc(text));
                }
                Block::Table(table) => s.push_str(&table_html(table)),
                Block::Chart(chart) => s.push_str(&chart_svg(chart)),
            }
        }
        s.push_str("</section>");
    }
    let _ = writeln!(
        s,
        "<footer>{}</footer></main></body></html>",
        esc(&doc.footer)
    );
    s
}

fn chart_svg(chart: &Chart) -> String {
    match chart {
        Chart::Levels(mechanisms) => svg_levels(mechanisms),
        Chart::Bars {
            bars,
            format,
            label,
        } => svg_bars(bars, *format, label),
        Chart::Forest { rows, label } => svg_forest(rows, label),
        Chart::Line { bins, label } => svg_line(bins, label),
    }
}
