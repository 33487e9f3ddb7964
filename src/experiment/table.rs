//! The experiment as the paper lays out its Table 2: a row per model, and for each mechanism
//! accuracy, macro-F1, T-F1 and IOU-F1.

use super::{ExperimentReport, Scores};
use std::fmt::Write as _;

fn cell(mean: f64, sd: f64, seeds: usize) -> String {
    if seeds > 1 {
        format!("{mean:.3} ± {sd:.3}")
    } else {
        format!("{mean:.3}")
    }
}

/// The table, a line on what it is, and how each row was made.
pub fn markdown(r: &ExperimentReport) -> String {
    let seeds = r.dev_pairs.len();
    let sides = match r.folds {
        Some(k) => format!("{k} grouped folds of each seed"),
        None => format!(
            "each seed's split (grouped by seeker post, dev fraction {})",
            r.dev_fraction
        ),
    };
    let mut s = format!(
        "Dev pairs of {sides}: {}; seeds {}. Values are the mean{} over {}.\n\n",
        r.dev_pairs
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        r.seeds
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if seeds > 1 { " ± sample sd" } else { "" },
        if r.folds.is_some() {
            "seeds and folds"
        } else {
            "seeds"
        }
    );
    s.push_str("| model | ER acc | ER F1 | ER T-F1 | ER IOU-F1 | IP acc | IP F1 | IP T-F1 | IP IOU-F1 | EX acc | EX F1 | EX T-F1 | EX IOU-F1 | mean F1 | train time |\n");
    s.push_str(&format!("|---{}|\n", "|---".repeat(14)));
    for row in &r.rows {
        let _ = write!(s, "| {} ", row.name);
        for (mean, sd) in row.mean.iter().zip(&row.sd) {
            let f = |g: fn(&Scores) -> f64| cell(g(mean), g(sd), seeds);
            let _ = write!(
                s,
                "| {} | {} | {} | {} ",
                f(|x| x.accuracy),
                f(|x| x.macro_f1),
                f(|x| x.t_f1),
                f(|x| x.iou_f1)
            );
        }
        let times: Vec<f64> = row.runs.iter().filter_map(|r| r.train_seconds).collect();
        let time = if times.is_empty() {
            "—".to_owned()
        } else {
            format!("{:.0} s", times.iter().sum::<f64>() / times.len() as f64)
        };
        let _ = writeln!(s, "| {:.3} | {time} |", row.mean_macro_f1());
    }
    s.push_str("\nHow each row was made:\n\n");
    for row in &r.rows {
        let _ = writeln!(s, "- {}: {}", row.name, row.how);
    }
    s.push_str("\nThe majority and TF-IDF rows predict no rationales: their T-F1 and IOU-F1 are the share of dev responses without a gold rationale.\n");
    s
}
