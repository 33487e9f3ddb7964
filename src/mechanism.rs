//! The three communication mechanisms of empathy that EPITOME annotates.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Number of empathy levels per mechanism: 0 (none), 1 (weak), 2 (strong).
pub const NUM_LEVELS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mechanism {
    /// Emotional Reactions: warmth, compassion, concern.
    #[serde(rename = "ER")]
    EmotionalReactions,
    /// Interpretations: communicating an understanding of the seeker's feelings or experience.
    #[serde(rename = "IP")]
    Interpretations,
    /// Explorations: asking about what the seeker has not said.
    #[serde(rename = "EX")]
    Explorations,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [
        Mechanism::EmotionalReactions,
        Mechanism::Interpretations,
        Mechanism::Explorations,
    ];

    /// The two-letter code used in the paper, in output files and in weight names.
    pub fn code(self) -> &'static str {
        match self {
            Mechanism::EmotionalReactions => "ER",
            Mechanism::Interpretations => "IP",
            Mechanism::Explorations => "EX",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::EmotionalReactions => "Emotional Reactions",
            Mechanism::Interpretations => "Interpretations",
            Mechanism::Explorations => "Explorations",
        }
    }

    /// File name of this mechanism's annotations in the EPITOME Reddit release.
    pub fn annotation_file(self) -> &'static str {
        match self {
            Mechanism::EmotionalReactions => "emotional-reactions-reddit.csv",
            Mechanism::Interpretations => "interpretations-reddit.csv",
            Mechanism::Explorations => "explorations-reddit.csv",
        }
    }

    /// Position in [`Mechanism::ALL`]; per-mechanism arrays are indexed by it.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Mechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "ER" => Ok(Mechanism::EmotionalReactions),
            "IP" => Ok(Mechanism::Interpretations),
            "EX" => Ok(Mechanism::Explorations),
            _ => Err(format!("unknown mechanism '{s}': expected ER, IP or EX")),
        }
    }
}
