//! report.md: the document as Markdown. Charts are left out; their numbers are in the tables
//! beside them.

use super::super::insights::Insights;
use super::document::*;
use super::format::with_ci;
use std::fmt::Write as _;

/// The report as Markdown.
pub fn markdown(r: &Insights) -> String {
    let doc = document(r);
    let mut s = format!("# {}\n\n{}\n", doc.title, doc.scope);
    for section in &doc.sections {
        let _ = write!(s, "\n## {}\n", section.title);
        for block in &section.blocks {
            match block {
                Block::Paragraph(text) => {
                    let _ = write!(s, "\n{text}\n");
                }
                Block::Verdict(text) => {
                    let _ = write!(s, "\n**{text}**\n");
                }
                Block::Subheading(text) => {
                    let _ = write!(s, "\n### {text}\n");
                }
                Block::List(_, items) => {
                    s.push('\n');
                    for item in items {
                        let _ = writeln!(s, "- {item}");
                    }
                }
                Block::Warning(text) => {
                    let _ = write!(s, "\n> **Warning:** {text}\n");
                }
                Block::Table(table) => table_md(&mut s, table),
                Block::Chart(_) => {}
            }
        }
    }
    let _ = write!(s, "\n{}\n", doc.footer);
    s
}

fn table_md(s: &mut String, table: &Table) {
    let row = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    s.push('\n');
    s.push_str(&row(table.head.iter().map(|h| cell_md(h)).collect()));
    s.push_str(&row(vec!["---".into(); table.head.len()]));
    for cells in &table.rows {
        s.push_str(&row(cells
            .iter()
            .map(|c| match c {
                Cell::Text(t) => cell_md(t),
                Cell::Value(e, f) => with_ci(e, *f),
            })
            .collect()));
    }
}

/// A `|` or a line break from the input (a file name, a column label) would end the cell.
fn cell_md(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}
