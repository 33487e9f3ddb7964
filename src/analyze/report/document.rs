//! What the report says, described once: sections of text, tables and charts built from
//! [`Insights`]. `markdown.rs` and `html.rs` only decide how each block looks, so the two
//! forms cannot drift apart in what they report.

use super::super::bootstrap::Estimate;
use super::super::insights::*;
use super::findings::*;
use super::format::*;

pub(super) struct Document<'a> {
    pub title: &'static str,
    /// What was analysed, in one line.
    pub scope: String,
    pub sections: Vec<Section<'a>>,
    pub footer: String,
}

pub(super) struct Section<'a> {
    /// A stable anchor for links into the HTML page.
    pub id: &'static str,
    pub title: String,
    pub blocks: Vec<Block<'a>>,
}

pub(super) enum Block<'a> {
    Paragraph(String),
    /// The one-sentence answer of a section, set apart.
    Verdict(String),
    Subheading(String),
    List(ListKind, Vec<String>),
    Warning(String),
    Table(Table),
    /// A picture of numbers that a table of the same section also holds, so that a form
    /// without pictures (Markdown) loses nothing by leaving it out.
    Chart(Chart<'a>),
}

#[derive(Clone, Copy)]
pub(super) enum ListKind {
    Findings,
    Method,
}

pub(super) struct Table {
    pub head: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

/// A table cell: text, or an estimate with its interval, formatted by `format`.
pub(super) enum Cell {
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

impl<T: ToString> From<&T> for Cell {
    fn from(n: &T) -> Self {
        Cell::Text(n.to_string())
    }
}

pub(super) enum Chart<'a> {
    Levels(&'a [MechanismLevels]),
    Bars {
        bars: Vec<(String, Estimate)>,
        format: fn(f64) -> String,
        label: String,
    },
    Forest {
        rows: Vec<(String, Estimate)>,
        label: String,
    },
    Line {
        bins: &'a [ExperienceBin],
        label: String,
    },
}

/// The whole report, in reading order.
pub(super) fn document(r: &Insights) -> Document<'_> {
    let mut sections = vec![Section {
        id: "findings",
        title: "Key findings".into(),
        blocks: vec![Block::List(ListKind::Findings, findings(r))],
    }];
    sections.push(levels(&r.empathy, r.settings.high_empathy_min_total));
    if !r.outcomes.is_empty() {
        sections.push(outcomes(&r.outcomes));
    }
    if let Some(rel) = &r.relationship {
        sections.push(relationship(rel));
    }
    if let Some(l) = &r.learning {
        sections.push(learning(l));
    }
    if !r.warnings.is_empty() {
        sections.push(Section {
            id: "warnings",
            title: "Warnings".into(),
            blocks: r.warnings.iter().cloned().map(Block::Warning).collect(),
        });
    }
    sections.push(Section {
        id: "method",
        title: "Method and data".into(),
        blocks: vec![Block::List(ListKind::Method, method_lines(r))],
    });
    Document {
        title: "Empathy insights",
        scope: format!("{}.", scope_line(r)),
        sections,
        footer: format!(
            "Values are shown as estimate (95% CI low to high). Made by epitome {}. Method: {CITATION}",
            r.epitome_version
        ),
    }
}

fn levels(e: &EmpathyLevels, high_min: u8) -> Section<'_> {
    let mechanisms = Table {
        head: vec![
            "Mechanism",
            "none (0)",
            "weak (1)",
            "strong (2)",
            "mean level",
        ],
        rows: e
            .mechanisms
            .iter()
            .map(|m| {
                vec![
                    m.mechanism.as_str().into(),
                    Cell::Value(m.shares[0], pct),
                    Cell::Value(m.shares[1], pct),
                    Cell::Value(m.shares[2], pct),
                    Cell::Value(m.mean_level, number),
                ]
            })
            .collect(),
    };
    let totals = Table {
        head: vec!["Total score", "Interactions", "Share"],
        rows: e
            .total_score
            .iter()
            .map(|t| {
                vec![
                    (&t.total).into(),
                    (&t.count).into(),
                    Cell::Value(t.share, pct),
                ]
            })
            .collect(),
    };
    Section {
        id: "levels",
        title: "1. How empathic are responses?".into(),
        blocks: vec![
            Block::Paragraph("Share of responses at each level of Emotional Reactions (ER), Interpretations (IP) and Explorations (EX).".into()),
            Block::Chart(Chart::Levels(&e.mechanisms)),
            Block::Table(mechanisms),
            Block::Subheading("Total score (ER + IP + EX, 0–6)".into()),
            Block::Paragraph(format!(
                "{} of interactions score at least {high_min} ({}).",
                pct(e.high_empathy_share.value),
                ci_only(&e.high_empathy_share, pct)
            )),
            Block::Chart(Chart::Bars {
                bars: e
                    .total_score
                    .iter()
                    .map(|t| (t.total.to_string(), t.share))
                    .collect(),
                format: pct,
                label: "Share of interactions by total score".into(),
            }),
            Block::Table(totals),
        ],
    }
}

fn outcomes(outcomes: &[OutcomeByLevel]) -> Section<'_> {
    let mut blocks = vec![Block::Paragraph(
        "The change of each value is against responses with none of that mechanism (level 0), with its 95% interval.".into(),
    )];
    for o in outcomes {
        let mut forest = Vec::new();
        let mut rows = Vec::new();
        for m in &o.mechanisms {
            for l in &m.levels {
                if let Some(rel) = l.relative_to_level_0 {
                    forest.push((format!("{} {}", m.mechanism, level_name(l.level)), rel));
                }
                rows.push(vec![
                    format!("{} {} ({})", m.mechanism, l.level, level_name(l.level)).into(),
                    (&l.n).into(),
                    Cell::Value(l.value, value_format(o.is_rate)),
                    l.relative_to_level_0
                        .map_or("—".into(), |e| Cell::Value(e, change)),
                ]);
            }
        }
        blocks.push(Block::Subheading(o.label.clone()));
        blocks.push(Block::Chart(Chart::Forest {
            rows: forest,
            label: format!("{}: change versus level 0", o.label),
        }));
        blocks.push(Block::Table(Table {
            head: vec!["Level", "n", "Value", "vs level 0"],
            rows,
        }));
    }
    Section {
        id: "outcomes",
        title: "2. Outcomes by level".into(),
        blocks,
    }
}

fn relationship(rel: &Relationship) -> Section<'_> {
    let low = format!("low (total ≤ {})", rel.low_empathy_max_total);
    let high = format!("high (total ≥ {})", rel.high_empathy_min_total);
    Section {
        id: "relationship",
        title: "3. Relationship forming".into(),
        blocks: vec![
            Block::Paragraph(format!(
                "Follow rate after low-empathy (total ≤ {}) and high-empathy (total ≥ {}) interactions.",
                rel.low_empathy_max_total, rel.high_empathy_min_total
            )),
            Block::Verdict(format!(
                "High versus low: {}.",
                with_ci(&rel.relative, change)
            )),
            Block::Chart(Chart::Bars {
                bars: vec![(low.clone(), rel.low.rate), (high.clone(), rel.high.rate)],
                format: pct,
                label: "Follow rate after low and high empathy".into(),
            }),
            Block::Table(Table {
                head: vec!["Empathy", "Interactions", "Follow rate"],
                rows: vec![
                    vec![low.into(), (&rel.low.n).into(), Cell::Value(rel.low.rate, pct)],
                    vec![
                        high.into(),
                        (&rel.high.n).into(),
                        Cell::Value(rel.high.rate, pct),
                    ],
                ],
            }),
        ],
    }
}

fn learning(l: &Learning) -> Section<'_> {
    let mut blocks = vec![
        Block::Verdict(l.summary.clone()),
        Block::Paragraph(format!(
            "{} supporters with at least {} dated responses ({} responses); {} supporters had fewer and are left out of this section.",
            l.supporters, l.min_responses, l.responses, l.excluded_supporters
        )),
    ];
    for (title, first, bins) in [
        (
            "Mean total score by n-th response",
            "n-th response",
            &l.by_response_number,
        ),
        (
            "Mean total score by days since the first response",
            "Days since first",
            &l.by_days_since_first,
        ),
    ] {
        blocks.push(Block::Subheading(title.into()));
        blocks.push(Block::Chart(Chart::Line {
            bins,
            label: title.into(),
        }));
        blocks.push(Block::Table(Table {
            head: vec![first, "Responses", "Supporters", "Mean total"],
            rows: bins
                .iter()
                .map(|b| {
                    vec![
                        b.label.as_str().into(),
                        (&b.responses).into(),
                        (&b.supporters).into(),
                        Cell::Value(b.mean_total, number),
                    ]
                })
                .collect(),
        }));
    }
    blocks.push(Block::Subheading(
        "Within-supporter change per doubling of experience".into(),
    ));
    blocks.push(Block::Table(Table {
        head: vec!["Doubling of", "Total (0–6)", "ER", "IP", "EX"],
        rows: [
            ("the number of responses", &l.slope_per_doubling_responses),
            (
                "1 + days since the first response",
                &l.slope_per_doubling_days,
            ),
        ]
        .into_iter()
        .map(|(name, s)| {
            vec![
                name.into(),
                Cell::Value(s.total, number),
                Cell::Value(s.er, number),
                Cell::Value(s.ip, number),
                Cell::Value(s.ex, number),
            ]
        })
        .collect(),
    }));
    Section {
        id: "learning",
        title: "4. Learning over time".into(),
        blocks,
    }
}
