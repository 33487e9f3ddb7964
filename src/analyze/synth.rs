//! Synthetic platforms with planted effects (`epitome synth-platform`): interactions whose
//! likes, replies and follows depend on the levels by known factors, and supporters whose
//! empathy is flat or changes with experience. The analysis is tested by recovering what was
//! planted; the files also make a sample report and the benchmark input.
//!
//! Levels of the three mechanisms are drawn independently, and a supporter's popularity
//! (which scales likes) independently of their levels, so each planted factor is exactly the
//! ratio the analysis estimates: E[likes | ER = l] / E[likes | ER = 0] = factor[ER][l].

use super::timestamp::format_date;
use crate::atomic::write_atomically;
use crate::mechanism::Mechanism;
use crate::rng::SplitMix64;
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub interactions: usize,
    pub supporters: usize,
    pub seed: u64,
    /// Change per doubling of experience: > 0 moves each mechanism's level distribution
    /// towards level 2 by this share per doubling of the n-th response, < 0 towards level 0.
    pub learning: f64,
    /// Level distribution of each mechanism at a supporter's first response.
    pub base_levels: [[f64; 3]; 3],
    pub likes_base: f64,
    /// Multiplier of the expected likes per mechanism and level (level 0 is 1).
    pub likes_factor: [[f64; 3]; 3],
    pub reply_base: f64,
    /// Multiplier of the reply probability per mechanism and level.
    pub reply_factor: [[f64; 3]; 3],
    pub follow_base: f64,
    /// Multiplier of the follow probability when the total score is at least `high_min_total`.
    pub follow_high_factor: f64,
    pub high_min_total: u8,
    /// Standard deviation of a supporter's log popularity (scales their likes).
    pub popularity_spread: f64,
}

impl SynthConfig {
    /// Refuses settings no platform can be made from, naming the flag.
    pub fn validate(&self) -> Result<(), crate::OptionError> {
        use crate::OptionError as O;
        O::check(self.interactions >= 1, "--interactions", "at least 1")?;
        O::check(self.supporters >= 1, "--supporters", "at least 1")?;
        O::check(
            self.learning.is_finite() && self.learning.abs() <= 1.0,
            "--learning",
            "between -1 and 1",
        )
    }
}

impl Default for SynthConfig {
    /// Effects of the size the paper found on TalkLife (45% more likes with strong ER and IP,
    /// 47% more replies with strong EX, 79% more follows after high empathy); level shares
    /// near those of the EPITOME Reddit annotations.
    fn default() -> Self {
        Self {
            interactions: 20_000,
            supporters: 400,
            seed: 7,
            learning: 0.0,
            base_levels: [[0.66, 0.29, 0.05], [0.52, 0.06, 0.42], [0.85, 0.05, 0.10]],
            likes_base: 1.5,
            likes_factor: [[1.0, 1.2, 1.45], [1.0, 1.15, 1.45], [1.0, 1.0, 1.0]],
            reply_base: 0.3,
            reply_factor: [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.25, 1.47]],
            follow_base: 0.05,
            follow_high_factor: 1.79,
            high_min_total: 4,
            popularity_spread: 0.5,
        }
    }
}

/// One synthetic interaction.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthRow {
    pub responder: u32,
    pub seeker: u32,
    /// Unix seconds.
    pub created_at: i64,
    pub levels: [u8; 3],
    pub likes: u32,
    pub replied: u8,
    pub followed: u8,
}

/// What the analysis should find.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Planted {
    /// Relative change of mean likes, per mechanism (ER, IP, EX) and level 1, 2 versus 0.
    pub likes_relative: [[f64; 2]; 3],
    /// Relative change of the seeker reply rate.
    pub reply_relative: [[f64; 2]; 3],
    /// Follow rate after high versus low empathy, minus 1.
    pub follow_relative: f64,
    pub high_min_total: u8,
    /// The learning setting.
    pub learning: f64,
    /// The within-supporter slope of the expected total score per doubling of the n-th
    /// response, for these supporters (0 without learning).
    pub slope_per_doubling: f64,
}

pub struct SynthPlatform {
    pub rows: Vec<SynthRow>,
    pub planted: Planted,
}

/// The level distribution of a mechanism at a supporter's n-th response.
fn level_probs(config: &SynthConfig, m: usize, nth: usize) -> [f64; 3] {
    let base = config.base_levels[m];
    let a = (config.learning.abs() * (nth as f64).log2()).min(1.0);
    let target = if config.learning >= 0.0 { 2 } else { 0 };
    let mut p = base.map(|b| (1.0 - a) * b);
    p[target] += a;
    p
}

fn expected_total(config: &SynthConfig, nth: usize) -> f64 {
    (0..3)
        .map(|m| {
            let p = level_probs(config, m, nth);
            p[1] + 2.0 * p[2]
        })
        .sum()
}

fn draw(rng: &mut SplitMix64, probs: &[f64]) -> usize {
    let u = rng.next_f64();
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    probs.len() - 1
}

fn normal(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn poisson(rng: &mut SplitMix64, lambda: f64) -> u32 {
    // Knuth's method: fine for the small means used here.
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = rng.next_f64();
    while p > limit {
        k += 1;
        p *= rng.next_f64();
    }
    k
}

/// Generates a platform: supporters with heavy-tailed activity, each responding at
/// exponential gaps from a start date in 2024.
pub fn generate(config: &SynthConfig) -> SynthPlatform {
    let mut rng = SplitMix64::new(config.seed);
    let supporters = config.supporters.max(1);
    // Activity ∝ 1 / rank^0.9: a few prolific supporters, many occasional ones.
    let weights: Vec<f64> = (1..=supporters).map(|r| (r as f64).powf(-0.9)).collect();
    let total_weight: f64 = weights.iter().sum();
    let mut counts: Vec<usize> = weights
        .iter()
        .map(|w| (w / total_weight * config.interactions as f64).floor() as usize)
        .collect();
    let mut missing = config.interactions - counts.iter().sum::<usize>().min(config.interactions);
    let mut s = 0;
    while missing > 0 {
        counts[s % supporters] += 1;
        missing -= 1;
        s += 1;
    }
    let start = 1_704_067_200i64; // 2024-01-01T00:00:00Z
    let seekers = (config.interactions / 2).max(1);
    let mut rows = Vec::with_capacity(config.interactions);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (who, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let popularity = (config.popularity_spread * normal(&mut rng)
            - config.popularity_spread.powi(2) / 2.0)
            .exp();
        // Each supporter is active for one month to one and a half years.
        let mean_gap_days = (30.0 + 510.0 * rng.next_f64()) / count as f64;
        let mut t = start + (rng.next_f64() * 365.0 * 86_400.0) as i64;
        let xs: Vec<f64> = (1..=count).map(|n| (n as f64).log2()).collect();
        let ys: Vec<f64> = (1..=count).map(|n| expected_total(config, n)).collect();
        let (xm, ym) = (
            xs.iter().sum::<f64>() / count as f64,
            ys.iter().sum::<f64>() / count as f64,
        );
        for (x, y) in xs.iter().zip(&ys) {
            sxy += (x - xm) * (y - ym);
            sxx += (x - xm) * (x - xm);
        }
        for nth in 1..=count {
            let mut levels = [0u8; 3];
            for (m, level) in levels.iter_mut().enumerate() {
                *level = draw(&mut rng, &level_probs(config, m, nth)) as u8;
            }
            let factor =
                |f: &[[f64; 3]; 3]| -> f64 { (0..3).map(|m| f[m][levels[m] as usize]).product() };
            let lambda = config.likes_base * popularity * factor(&config.likes_factor);
            let reply_p = (config.reply_base * factor(&config.reply_factor)).min(1.0);
            let total: u8 = levels.iter().sum();
            let follow_p = (config.follow_base
                * if total >= config.high_min_total {
                    config.follow_high_factor
                } else {
                    1.0
                })
            .min(1.0);
            rows.push(SynthRow {
                responder: who as u32,
                seeker: rng.below(seekers) as u32,
                created_at: t,
                levels,
                likes: poisson(&mut rng, lambda),
                replied: u8::from(rng.next_f64() < reply_p),
                followed: u8::from(rng.next_f64() < follow_p),
            });
            t += (-(rng.next_f64().max(1e-12)).ln() * mean_gap_days * 86_400.0) as i64 + 60;
            // (the 60 s keep a supporter's responses strictly ordered in time)
        }
    }
    rows.sort_by_key(|r| (r.created_at, r.responder));
    let relative =
        |f: &[[f64; 3]; 3]| f.map(|l| [clean(l[1] / l[0] - 1.0), clean(l[2] / l[0] - 1.0)]);
    SynthPlatform {
        rows,
        planted: Planted {
            likes_relative: relative(&config.likes_factor),
            reply_relative: relative(&config.reply_factor),
            follow_relative: config.follow_high_factor - 1.0,
            high_min_total: config.high_min_total,
            learning: config.learning,
            slope_per_doubling: if sxx > 0.0 { clean(sxy / sxx) } else { 0.0 },
        },
    }
}

/// Rounds away floating-point noise (0.44999999999999996 → 0.45) for planted.json.
fn clean(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

const SEEKER_POSTS: [&str; 4] = [
    "I have been feeling so alone since I moved to a new city.",
    "My exams are next week and I can't stop panicking.",
    "I lost my job today and I don't know what to tell my family.",
    "I can't sleep and everything feels pointless lately.",
];

/// A response whose wording follows its levels, so that a model sees plausible text.
fn response_text(levels: [u8; 3]) -> String {
    let mut parts: Vec<&str> = Vec::new();
    parts.push(match levels[0] {
        0 => "",
        1 => "I hope things get better for you.",
        _ => "I'm so sorry you are going through this, that sounds really painful.",
    });
    parts.push(match levels[1] {
        0 => "Try to get some rest.",
        1 => "I understand.",
        _ => "I went through something similar last year and felt just as lost.",
    });
    parts.push(match levels[2] {
        0 => "",
        1 => "What happened?",
        _ => "How are you feeling about it now?",
    });
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

impl SynthPlatform {
    /// Writes interactions.csv, predictions.jsonl (in the format of `epitome predict`) and
    /// planted.json into `dir`, each file complete or absent.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        write_atomically(&dir.join("interactions.csv"), |w| {
            writeln!(
                w,
                "id,responder_id,seeker_id,created_at,likes,seeker_replied,seeker_followed,seeker_post,response_post"
            )?;
            for (i, r) in self.rows.iter().enumerate() {
                writeln!(
                    w,
                    "i{},s{},k{},{}T{},{},{},{},\"{}\",\"{}\"",
                    i + 1,
                    r.responder,
                    r.seeker,
                    format_date(r.created_at as f64),
                    clock(r.created_at),
                    r.likes,
                    r.replied,
                    r.followed,
                    SEEKER_POSTS[r.seeker as usize % SEEKER_POSTS.len()],
                    response_text(r.levels)
                )?;
            }
            Ok(())
        })?;
        write_atomically(&dir.join("predictions.jsonl"), |w| {
            for (i, r) in self.rows.iter().enumerate() {
                write!(w, "{{\"id\":\"i{}\"", i + 1)?;
                for m in Mechanism::ALL {
                    let level = r.levels[m.index()];
                    let probs = [0, 1, 2].map(|l| if l == level { "1.0" } else { "0.0" });
                    write!(
                        w,
                        ",\"{}\":{{\"level\":{level},\"probs\":[{}],\"rationales\":[]}}",
                        m.code(),
                        probs.join(",")
                    )?;
                }
                writeln!(w, ",\"truncated\":false}}")?;
            }
            Ok(())
        })?;
        write_atomically(&dir.join("planted.json"), |w| {
            serde_json::to_writer_pretty(&mut *w, &self.planted)?;
            writeln!(w)
        })
    }
}

/// `HH:MM:SSZ` of Unix seconds.
fn clock(secs: i64) -> String {
    let s = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_platform_and_texts_follow_levels() {
        let config = SynthConfig {
            interactions: 500,
            supporters: 20,
            ..Default::default()
        };
        let a = generate(&config);
        assert_eq!(a.rows.len(), 500);
        assert_eq!(a.rows, generate(&config).rows);
        assert_ne!(
            a.rows,
            generate(&SynthConfig {
                seed: 8,
                ..config.clone()
            })
            .rows
        );
        assert_eq!(a.planted.slope_per_doubling, 0.0);
        assert!((a.planted.likes_relative[0][1] - 0.45).abs() < 1e-12);
        assert!(response_text([2, 0, 1]).starts_with("I'm so sorry"));
        assert_eq!(clock(1_704_067_200 + 3661), "01:01:01Z");
        let learning = generate(&SynthConfig {
            learning: 0.05,
            ..config
        });
        assert!(learning.planted.slope_per_doubling > 0.1);
    }
}
