//! Training settings: the defaults for the default encoder, and the paper's preset.

use crate::mechanism::Mechanism;
use crate::model::{LevelHead, LevelPooling, ResponderSharing};
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
        let [er, ip, ex] = per_mechanism(s, ClassWeighting::None, |v| {
            ClassWeighting::from_str(v.trim(), true)
                .map_err(|_| format!("unknown weighting '{v}': expected none, inverse or sqrt"))
        })?;
        Ok(Self { er, ip, ex })
    }
}

/// Reads `VALUE` (every mechanism) or `ER=VALUE,IP=VALUE,...` with unnamed mechanisms at
/// `unnamed`, in mechanism order. `;` separates as `,` does, for places where `,` already
/// separates settings (an experiment's `--recipe`).
fn per_mechanism<T: Copy>(
    s: &str,
    unnamed: T,
    value: impl Fn(&str) -> Result<T, String>,
) -> Result<[T; 3], String> {
    if !s.contains('=') {
        return Ok([value(s)?; 3]);
    }
    let mut values = [unnamed; 3];
    for part in s.split([',', ';']) {
        let (m, v) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}': expected MECHANISM=VALUE"))?;
        values[m.trim().parse::<Mechanism>()?.index()] = value(v)?;
    }
    Ok(values)
}

/// Each mechanism's weight on its own level loss, on top of λ_EI, which weighs all three:
/// with one responder encoder shared by the mechanisms, a mechanism weighted up asks more of
/// the shared encoder than the others do.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelLossWeights {
    #[serde(rename = "ER")]
    pub er: f64,
    #[serde(rename = "IP")]
    pub ip: f64,
    #[serde(rename = "EX")]
    pub ex: f64,
}

impl Default for LevelLossWeights {
    fn default() -> Self {
        Self {
            er: 1.0,
            ip: 1.0,
            ex: 1.0,
        }
    }
}

impl LevelLossWeights {
    pub fn get(&self, m: Mechanism) -> f64 {
        match m {
            Mechanism::EmotionalReactions => self.er,
            Mechanism::Interpretations => self.ip,
            Mechanism::Explorations => self.ex,
        }
    }

    fn valid(&self) -> bool {
        [self.er, self.ip, self.ex].iter().all(is_loss_weight)
    }
}

/// A finite number ≥ 0: what a level-loss weight may be, parsed or deserialised.
fn is_loss_weight(w: &f64) -> bool {
    w.is_finite() && *w >= 0.0
}

impl std::fmt::Display for LevelLossWeights {
    /// The form `--level-loss-weights` reads: `ER=1,IP=2,EX=1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ER={},IP={},EX={}", self.er, self.ip, self.ex)
    }
}

impl std::str::FromStr for LevelLossWeights {
    type Err = String;

    /// `2` for every mechanism, or `IP=2` (unnamed mechanisms: 1); each a number ≥ 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let [er, ip, ex] = per_mechanism(s, 1.0, |v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(is_loss_weight)
                .ok_or_else(|| format!("level-loss weight '{v}': expected a number ≥ 0"))
        })?;
        Ok(Self { er, ip, ex })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Peak learning rate of the layers new to the model (the cross-attention and both
    /// heads), which start from random values; `lr` unless set (bundles made before it have
    /// no entry).
    #[serde(default)]
    pub head_lr: Option<f64>,
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
    /// Seed of the split alone, where it should not follow `seed`: models of several seeds on
    /// one split (an ensemble's members). Bundles made before it have no entry.
    #[serde(default)]
    pub split_seed: Option<u64>,
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
    /// Which response state the level head reads (the paper's first token unless set;
    /// bundles made before it have no entry).
    #[serde(default)]
    pub level_pooling: LevelPooling,
    /// Each mechanism's weight on its level loss, on top of `lambda_ei` (1 each unless set;
    /// bundles made before it have no entry).
    #[serde(default)]
    pub level_loss_weights: LevelLossWeights,
}

impl TrainOptions {
    /// The peak learning rate of the new layers.
    pub fn head_lr(&self) -> f64 {
        self.head_lr.unwrap_or(self.lr)
    }

    /// The original code's settings (tuned there for RoBERTa-base): one model per mechanism,
    /// lr 2e-5 for 4 epochs, batch 32, no warm-up, no weight decay, everything fine-tuned.
    pub fn paper() -> Self {
        Self {
            epochs: 4,
            batch_size: 32,
            lr: 2e-5,
            head_lr: None,
            warmup: 0.0,
            weight_decay: 0.0,
            adam_eps: 1e-8,
            max_grad_norm: 1.0,
            lambda_ei: 1.0,
            lambda_re: 0.5,
            max_len: 64,
            dropout: 0.1,
            seed: 12,
            split_seed: None,
            dev_fraction: 0.1,
            limit: None,
            fold: None,
            responder: ResponderSharing::Separate,
            class_weights: LevelWeighting::all(ClassWeighting::None),
            train_embeddings: true,
            level_head: LevelHead::Softmax,
            level_pooling: LevelPooling::First,
            level_loss_weights: LevelLossWeights::default(),
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
            level_loss_weights => "level-loss-weights",
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
        if self.level_pooling != base.level_pooling {
            if let Some(v) = self.level_pooling.to_possible_value() {
                flags.push(format!("--level-pooling {}", v.get_name()));
            }
        }
        if let Some(head_lr) = self.head_lr {
            flags.push(format!("--head-lr {head_lr}"));
        }
        if let Some(split_seed) = self.split_seed {
            flags.push(format!("--split-seed {split_seed}"));
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
        crate::data::check_split_options(self.dev_fraction, self.fold)?;
        O::check(self.batch_size >= 1, "--batch-size", "at least 1")?;
        O::check((0.0..1.0).contains(&self.dropout), "--dropout", "in [0, 1)")?;
        O::check((0.0..1.0).contains(&self.warmup), "--warmup", "in [0, 1)")?;
        O::check(
            self.lr > 0.0 && self.lr.is_finite(),
            "--lr",
            "a positive number",
        )?;
        O::check(
            self.head_lr.is_none_or(|lr| lr > 0.0 && lr.is_finite()),
            "--head-lr",
            "a positive number",
        )?;
        O::check(self.max_len >= 4, "--max-len", "at least 4")?;
        O::check(
            self.level_loss_weights.valid(),
            "--level-loss-weights",
            "numbers ≥ 0",
        )?;
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

    #[test]
    fn level_loss_weights_parse_one_number_or_one_per_mechanism_and_print_back() {
        let all: LevelLossWeights = "0.5".parse().unwrap();
        assert_eq!((all.er, all.ip, all.ex), (0.5, 0.5, 0.5));
        let ip: LevelLossWeights = "IP=2".parse().unwrap();
        assert_eq!((ip.er, ip.ip, ip.ex), (1.0, 2.0, 1.0));
        let two: LevelLossWeights = "IP=2;EX=0".parse().unwrap();
        assert_eq!((two.er, two.ip, two.ex), (1.0, 2.0, 0.0));
        assert_eq!(two.to_string().parse::<LevelLossWeights>().unwrap(), two);
        assert_eq!(two.get(Mechanism::Interpretations), 2.0);
        for bad in ["IP=-1", "IP=heavy", "XX=2", "IP=inf", ""] {
            assert!(bad.parse::<LevelLossWeights>().is_err(), "{bad}");
        }
        let negative = TrainOptions {
            level_loss_weights: LevelLossWeights {
                ip: -1.0,
                ..LevelLossWeights::default()
            },
            ..TrainOptions::default_for_minilm()
        };
        assert!(negative.validate().is_err());
    }
}
