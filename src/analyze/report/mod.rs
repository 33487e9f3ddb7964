//! The report in four forms, all from [`Insights`]: `insights.json` (every number),
//! `report.md`, and `report.html` (one self-contained file: inline CSS and SVG, no scripts,
//! nothing loaded from elsewhere, laid out for phones as well as desktops).

use super::insights::*;
use crate::atomic::write_atomically;
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

mod csv;
mod document;
mod findings;
mod format;
mod html;
mod markdown;
mod svg;

pub use csv::estimates_csv;
pub use findings::findings;
pub use html::html;
pub use markdown::markdown;

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
    fn markdown_and_html_render_every_block_of_the_one_description() {
        let r = insights("in.csv");
        let (md, page) = (markdown(&r), html(&r));
        let doc = document::document(&r);
        let mut texts = vec![doc.scope.clone(), doc.footer.clone()];
        let mut tables = 0;
        for section in &doc.sections {
            texts.push(section.title.clone());
            for block in &section.blocks {
                match block {
                    document::Block::Paragraph(t)
                    | document::Block::Verdict(t)
                    | document::Block::Subheading(t)
                    | document::Block::Warning(t) => texts.push(t.clone()),
                    document::Block::List(_, items) => texts.extend(items.iter().cloned()),
                    document::Block::Table(t) => {
                        tables += 1;
                        texts.extend(t.head.iter().map(|h| h.to_string()));
                        for row in &t.rows {
                            for cell in row {
                                if let document::Cell::Text(t) = cell {
                                    texts.push(t.clone());
                                }
                            }
                        }
                    }
                    document::Block::Chart(_) => {}
                }
            }
        }
        assert!(doc.sections.len() >= 4 && tables >= 5);
        for t in &texts {
            assert!(md.contains(t.as_str()), "report.md lacks {t:?}");
            assert!(page.contains(&html::esc(t)), "report.html lacks {t:?}");
        }
        assert_eq!(md.matches("\n## ").count(), doc.sections.len());
        assert_eq!(page.matches("<section id=").count(), doc.sections.len());
        assert_eq!(page.matches("<table>").count(), tables);
        assert_eq!(md.matches("\n| ---").count(), tables);
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
