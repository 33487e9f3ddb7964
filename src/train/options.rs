//! Training settings: the defaults for the default encoder, and the paper's preset.

use crate::mechanism::Mechanism;
use crate::model::{LevelHead, ResponderSharing};
use serde::{Deserialize, Serialize};

/// How the level loss weighs the three levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeighting {
    /// Every pair counts the same.
    None,
    /// Weight n / (3·n_level): rare levels count as much as common ones in total.
    Inverse,
    /// The square root of the inverse weights: half-way, in log scale.
    Sqrt,
}

/// The level-loss weighting of each mechanism. Each mechanism has its own level head, so each
/// can weigh its levels differently: IP and EX have a rare level 1 that plain weighting never
/// predicts, while ER's levels are balanced enough that strong weighting costs accuracy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelWeighting {
    #[serde(rename = "ER")]
    pub er: ClassWeighting,
    #[serde(rename = "IP")]
    pub ip: ClassWeighting,
    #[serde(rename = "EX")]
    pub ex: ClassWeighting,
}

impl LevelWeighting {
    pub fn all(kind: ClassWeighting) -> Self {
        Self {
            er: kind,
            ip: kind,
            ex: kind,
        }
    }

    pub fn get(&self, m: Mechanism) -> ClassWeighting {
        match m {
            Mechanism::EmotionalReactions => self.er,
            Mechanism::Interpretations => self.ip,
            Mechanism::Explorations => self.ex,
        }
    }
}

impl std::fmt::Display for LevelWeighting {
    /// The form `--class-weights` reads: `ER=sqrt,IP=inverse,EX=inverse`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        let name = |w: ClassWeighting| {
            w.to_possible_value()
                .map_or(String::new(), |v| v.get_name().to_owned())
        };
        write!(
            f,
            "ER={},IP={},EX={}",
            name(self.er),
            name(self.ip),
            name(self.ex)
        )
    }
}

impl std::str::FromStr for LevelWeighting {
    type Err = String;

    /// `sqrt` for every mechanism, or `ER=sqrt,IP=inverse,EX=inverse` (unnamed ones: none).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use clap::ValueEnum;
        let kind = |v: &str| {
            ClassWeighting::from_str(v.trim(), true)
                .map_err(|_| format!("unknown weighting '{v}': expected none, inverse or sqrt"))
        };
        if !s.contains('=') {
            return Ok(Self::all(kind(s)?));
        }
        let mut w = Self::all(ClassWeighting::None);
        for part in s.split(',') {
            let (m, v) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}': expected MECHANISM=WEIGHTING"))?;
            match m.trim().parse::<Mechanism>()? {
                Mechanism::EmotionalReactions => w.er = kind(v)?,
                Mechanism::Interpretations => w.ip = kind(v)?,
                Mechanism::Explorations => w.ex = kind(v)?,
            }
        }
        Ok(w)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Fraction of the steps spent warming the learning rate up linearly from 0.
    pub warmup: f64,
    pub weight_decay: f64,
    pub adam_eps: f64,
    pub max_grad_norm: f64,
    pub lambda_ei: f64,
    pub lambda_re: f64,
    /// Maximum tokens of each post, specials included.
    pub max_len: usize,
    pub dropout: f64,
    pub seed: u64,
    pub dev_fraction: f64,
    pub limit: Option<usize>,
    /// Use grouped k-fold dev sides instead of `dev_fraction`: fold `index` of `count`.
    #[serde(default)]
    pub fold: Option<crate::data::Fold>,
    pub responder: ResponderSharing,
    pub class_weights: LevelWeighting,
    /// Whether the responder's word-embedding table trains. Freezing it saves most of the
    /// optimizer's work (it is half of MiniLM's parameters) and keeps rare words' vectors intact.
    pub train_embeddings: bool,
    /// The kind of level head (the paper's softmax unless set; bundles made before it have
    /// no entry).
    #[serde(default)]
    pub level_head: LevelHead,
}

impl TrainOptions {
    /// The original code's settings (tuned there for RoBERTa-base): one model per mechanism,
    /// lr 2e-5 for 4 epochs, batch 32, no warm-up, no weight decay, everything fine-tuned.
    pub fn paper() -> Self {
        Self {
            epochs: 4,
            batch_size: 32,
            lr: 2e-5,
            warmup: 0.0,
            weight_decay: 0.0,
            adam_eps: 1e-8,
            max_grad_norm: 1.0,
            lambda_ei: 1.0,
            lambda_re: 0.5,
            max_len: 64,
            dropout: 0.1,
            seed: 12,
            dev_fraction: 0.1,
            limit: None,
            fold: None,
            responder: ResponderSharing::Separate,
            class_weights: LevelWeighting::all(ClassWeighting::None),
            train_embeddings: true,
            level_head: LevelHead::Softmax,
        }
    }

    /// epitome's defaults for the default encoder (all-MiniLM-L6-v2); docs/RESULTS.md has the
    /// comparison on the dev split that chose them.
    pub fn default_for_minilm() -> Self {
        Self {
            epochs: 6,
            lr: 8e-5,
            responder: ResponderSharing::Shared,
            class_weights: LevelWeighting {
                er: ClassWeighting::Sqrt,
                ip: ClassWeighting::Inverse,
                ex: ClassWeighting::Inverse,
            },
            train_embeddings: false,
            ..Self::paper()
        }
    }

    /// The `epitome train` command that trains with these options, naming only the flags
    /// that differ from the default preset, and the seed (`DATA` and `OUT` stand for the
    /// directories).
    pub fn command_line(&self) -> String {
        let base = Self::default_for_minilm();
        let mut flags = vec![format!(
            "epitome train --data DATA --out OUT --seed {}",
            self.seed
        )];
        macro_rules! flag {
            ($($field:ident => $name:literal),*) => {
                $( if self.$field != base.$field { flags.push(format!("--{} {}", $name, self.$field)); } )*
            };
        }
        flag!(
            epochs => "epochs",
            batch_size => "batch-size",
            lr => "lr",
            warmup => "warmup",
            weight_decay => "weight-decay",
            lambda_ei => "lambda-ei",
            lambda_re => "lambda-re",
            max_len => "max-len",
            dropout => "dropout",
            dev_fraction => "dev-fraction",
            class_weights => "class-weights",
            train_embeddings => "train-embeddings"
        );
        use clap::ValueEnum;
        if self.responder != base.responder {
            if let Some(v) = self.responder.to_possible_value() {
                flags.push(format!("--responder {}", v.get_name()));
            }
        }
        if self.level_head != base.level_head {
            if let Some(v) = self.level_head.to_possible_value() {
                flags.push(format!("--level-head {}", v.get_name()));
            }
        }
        if let Some(limit) = self.limit {
            flags.push(format!("--limit {limit}"));
        }
        if let Some(f) = self.fold {
            flags.push(format!("--fold {}/{}", f.index, f.count));
        }
        flags.join(" ")
    }

    /// Refuses settings no run can use, naming the flag.
    pub fn validate(&self) -> Result<(), crate::OptionError> {
        use crate::OptionError as O;
        O::check(self.epochs >= 1, "--epochs", "at least 1")?;
        O::check(
            self.fold.is_none_or(|f| f.count >= 2 && f.index < f.count),
            "--fold",
            "INDEX/COUNT with COUNT at least 2 and INDEX below COUNT",
        )?;
        O::check(self.batch_size >= 1, "--batch-size", "at least 1")?;
        O::check(
            (0.0..1.0).contains(&self.dev_fraction),
            "--dev-fraction",
            "in [0, 1)",
        )?;
        O::check((0.0..1.0).contains(&self.dropout), "--dropout", "in [0, 1)")?;
        O::check((0.0..1.0).contains(&self.warmup), "--warmup", "in [0, 1)")?;
        O::check(
            self.lr > 0.0 && self.lr.is_finite(),
            "--lr",
            "a positive number",
        )?;
        O::check(self.max_len >= 4, "--max-len", "at least 4")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_weighting_parses_one_kind_or_one_per_mechanism() {
        assert_eq!(
            "sqrt".parse::<LevelWeighting>().unwrap(),
            LevelWeighting::all(ClassWeighting::Sqrt)
        );
        let w: LevelWeighting = "IP=inverse, EX=sqrt".parse().unwrap();
        assert_eq!(
            (w.er, w.ip, w.ex),
            (
                ClassWeighting::None,
                ClassWeighting::Inverse,
                ClassWeighting::Sqrt
            )
        );
        assert!("XX=sqrt".parse::<LevelWeighting>().is_err());
        assert!("ER=heavy".parse::<LevelWeighting>().is_err());
    }
}
