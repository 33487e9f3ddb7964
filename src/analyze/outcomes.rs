//! Analyses 1–3: how empathic responses are, outcomes by level, and follows after high versus
//! low empathy. All of them are ratios of sums over the 27 combinations of levels, so one
//! table per bootstrap replicate carries them all.

use super::bootstrap::Units;
use super::collect::{Interactions, NO_RESPONDER};
use crate::mechanism::{Mechanism, NUM_LEVELS};

/// Combinations of (ER, IP, EX) levels.
pub const CELLS: usize = 27;

/// Sums kept per cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Sum {
    Interactions,
    WithLikes,
    Likes,
    Liked,
    WithReplied,
    Replied,
    Replies,
    WithFollowed,
    Followed,
}

pub const WIDTH: usize = 9;

pub fn cell_of(levels: [u8; 3]) -> usize {
    levels[0] as usize + 3 * levels[1] as usize + 9 * levels[2] as usize
}

pub fn levels_of(cell: usize) -> [u8; 3] {
    [(cell % 3) as u8, (cell / 3 % 3) as u8, (cell / 9) as u8]
}

fn total_of(cell: usize) -> u8 {
    levels_of(cell).iter().sum()
}

/// An outcome compared across levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    MeanLikes,
    LikedShare,
    ReplyRate,
    MeanReplies,
    FollowRate,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::MeanLikes,
        Outcome::LikedShare,
        Outcome::ReplyRate,
        Outcome::MeanReplies,
        Outcome::FollowRate,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Outcome::MeanLikes => "mean_likes",
            Outcome::LikedShare => "share_with_likes",
            Outcome::ReplyRate => "seeker_reply_rate",
            Outcome::MeanReplies => "mean_seeker_replies",
            Outcome::FollowRate => "follow_rate",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::MeanLikes => "Mean likes",
            Outcome::LikedShare => "Share with at least one like",
            Outcome::ReplyRate => "Seeker reply rate",
            Outcome::MeanReplies => "Mean seeker replies",
            Outcome::FollowRate => "Follow rate",
        }
    }

    /// Whether the value is a share (shown as a percentage).
    pub fn is_rate(self) -> bool {
        !matches!(self, Outcome::MeanLikes | Outcome::MeanReplies)
    }

    /// (numerator, denominator) sums.
    fn sums(self) -> (Sum, Sum) {
        match self {
            Outcome::MeanLikes => (Sum::Likes, Sum::WithLikes),
            Outcome::LikedShare => (Sum::Liked, Sum::WithLikes),
            Outcome::ReplyRate => (Sum::Replied, Sum::WithReplied),
            Outcome::MeanReplies => (Sum::Replies, Sum::WithReplied),
            Outcome::FollowRate => (Sum::Followed, Sum::WithFollowed),
        }
    }

    pub fn denominator(self) -> Sum {
        self.sums().1
    }
}

/// Thresholds on the total score (0–6) that define low and high empathy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Low empathy: total ≤ this.
    pub low_max: u8,
    /// High empathy: total ≥ this.
    pub high_min: u8,
}

/// Where each statistic sits in the vector [`statistics`] returns.
pub mod at {
    use super::Outcome;
    pub fn level_share(m: usize, level: usize) -> usize {
        m * 3 + level
    }
    pub fn total_share(total: usize) -> usize {
        9 + total
    }
    pub const MEAN_TOTAL: usize = 16;
    pub const HIGH_SHARE: usize = 17;
    pub fn mean_level(m: usize) -> usize {
        18 + m
    }
    pub fn outcome(o: Outcome, m: usize, level: usize) -> usize {
        21 + (o as usize * 3 + m) * 3 + level
    }
    /// Relative change of level 1 or 2 against level 0.
    pub fn relative(o: Outcome, m: usize, level: usize) -> usize {
        66 + (o as usize * 3 + m) * 2 + (level - 1)
    }
    pub const FOLLOW_LOW: usize = 96;
    pub const FOLLOW_HIGH: usize = 97;
    pub const FOLLOW_RELATIVE: usize = 98;
    pub const COUNT: usize = 99;
}

/// Sum `s` over the cells that `keep` selects.
fn sum_where(table: &[f64], s: Sum, keep: impl Fn(usize) -> bool) -> f64 {
    (0..CELLS)
        .filter(|&c| keep(c))
        .map(|c| table[c * WIDTH + s as usize])
        .sum()
}

/// Every statistic of analyses 1–3 from a table of sums (NaN where undefined).
pub fn statistics(table: &[f64], t: Thresholds) -> Vec<f64> {
    let mut out = vec![f64::NAN; at::COUNT];
    let n = sum_where(table, Sum::Interactions, |_| true);
    for (m, _) in Mechanism::ALL.iter().enumerate() {
        let mut level_sum = 0.0;
        for level in 0..NUM_LEVELS {
            let count = sum_where(table, Sum::Interactions, |c| {
                levels_of(c)[m] as usize == level
            });
            out[at::level_share(m, level)] = count / n;
            level_sum += count * level as f64;
            for o in Outcome::ALL {
                let (num, den) = o.sums();
                let in_level = |c: usize| levels_of(c)[m] as usize == level;
                out[at::outcome(o, m, level)] =
                    sum_where(table, num, in_level) / sum_where(table, den, in_level);
            }
        }
        out[at::mean_level(m)] = level_sum / n;
        for o in Outcome::ALL {
            let base = out[at::outcome(o, m, 0)];
            for level in 1..NUM_LEVELS {
                out[at::relative(o, m, level)] = out[at::outcome(o, m, level)] / base - 1.0;
            }
        }
    }
    let mut total_sum = 0.0;
    for total in 0..=6 {
        let count = sum_where(table, Sum::Interactions, |c| total_of(c) as usize == total);
        out[at::total_share(total)] = count / n;
        total_sum += count * total as f64;
    }
    out[at::MEAN_TOTAL] = total_sum / n;
    out[at::HIGH_SHARE] = sum_where(table, Sum::Interactions, |c| total_of(c) >= t.high_min) / n;
    let rate = |keep: &dyn Fn(usize) -> bool| {
        sum_where(table, Sum::Followed, keep) / sum_where(table, Sum::WithFollowed, keep)
    };
    out[at::FOLLOW_LOW] = rate(&|c| total_of(c) <= t.low_max);
    out[at::FOLLOW_HIGH] = rate(&|c| total_of(c) >= t.high_min);
    out[at::FOLLOW_RELATIVE] = out[at::FOLLOW_HIGH] / out[at::FOLLOW_LOW] - 1.0;
    out
}

/// Counts behind a statistic, for the small-group warnings: interactions with a value of
/// `s` in the cells `keep` selects.
pub fn group_size(table: &[f64], s: Sum, keep: impl Fn([u8; 3]) -> bool) -> u64 {
    sum_where(table, s, |c| keep(levels_of(c))) as u64
}

/// One row of sums for an interaction.
fn row(data: &Interactions, i: usize) -> [f64; WIDTH] {
    let mut r = [0.0; WIDTH];
    r[Sum::Interactions as usize] = 1.0;
    let likes = data.likes[i];
    if likes.is_finite() {
        r[Sum::WithLikes as usize] = 1.0;
        r[Sum::Likes as usize] = likes;
        r[Sum::Liked as usize] = f64::from(u8::from(likes >= 1.0));
    }
    let replied = data.replied[i];
    if replied.is_finite() {
        r[Sum::WithReplied as usize] = 1.0;
        r[Sum::Replied as usize] = f64::from(u8::from(replied >= 1.0));
        r[Sum::Replies as usize] = replied;
    }
    let followed = data.followed[i];
    if followed.is_finite() {
        r[Sum::WithFollowed as usize] = 1.0;
        r[Sum::Followed as usize] = followed;
    }
    r
}

/// Resampling units for analyses 1–3: each supporter with all their interactions when
/// `by_supporter` (interactions without a responder are units of their own), or each
/// interaction.
pub fn units(data: &Interactions, by_supporter: bool) -> Units {
    let mut units = Units::new(CELLS, WIDTH);
    if !by_supporter {
        for i in 0..data.len() {
            let r = row(data, i);
            units.push_unit([(cell_of(data.levels[i]), &r[..])]);
        }
        return units;
    }
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| data.responder[i]);
    let mut sums = vec![0.0; CELLS * WIDTH];
    let mut used = [false; CELLS];
    let flush = |units: &mut Units, sums: &mut Vec<f64>, used: &mut [bool; CELLS]| {
        units.push_unit(
            (0..CELLS)
                .filter(|&c| used[c])
                .map(|c| (c, &sums[c * WIDTH..(c + 1) * WIDTH])),
        );
        sums.iter_mut().for_each(|s| *s = 0.0);
        *used = [false; CELLS];
    };
    let mut k = 0;
    while k < order.len() {
        let who = data.responder[order[k]];
        let mut end = k + 1;
        if who != NO_RESPONDER {
            while end < order.len() && data.responder[order[end]] == who {
                end += 1;
            }
        }
        for &i in &order[k..end] {
            let c = cell_of(data.levels[i]);
            used[c] = true;
            for (s, v) in sums[c * WIDTH..(c + 1) * WIDTH]
                .iter_mut()
                .zip(row(data, i))
            {
                *s += v;
            }
        }
        flush(&mut units, &mut sums, &mut used);
        k = end;
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_a_hand_made_table() {
        // Two interactions at ER 0 (likes 1 and 3), two at ER 2 with IP 2 and EX 2 (likes 4, 8).
        let mut data = Interactions {
            levels: vec![[0, 0, 0], [0, 0, 0], [2, 2, 2], [2, 2, 2]],
            likes: vec![1.0, 3.0, 4.0, 8.0],
            replied: vec![f64::NAN; 4],
            followed: vec![0.0, 0.0, 1.0, 0.0],
            responder: vec![0, 1, 0, 1],
            created_at: vec![f64::NAN; 4],
            ..Default::default()
        };
        data.supporters = 2;
        let t = Thresholds {
            low_max: 1,
            high_min: 4,
        };
        for by_supporter in [false, true] {
            let s = statistics(&units(&data, by_supporter).table(), t);
            assert_eq!(s[at::level_share(0, 0)], 0.5);
            assert_eq!(s[at::level_share(0, 1)], 0.0);
            assert_eq!(s[at::total_share(6)], 0.5);
            assert_eq!(s[at::MEAN_TOTAL], 3.0);
            assert_eq!(s[at::HIGH_SHARE], 0.5);
            assert_eq!(s[at::outcome(Outcome::MeanLikes, 0, 0)], 2.0);
            assert_eq!(s[at::outcome(Outcome::MeanLikes, 0, 2)], 6.0);
            assert_eq!(s[at::relative(Outcome::MeanLikes, 0, 2)], 2.0);
            assert!(s[at::relative(Outcome::MeanLikes, 0, 1)].is_nan());
            assert!(s[at::outcome(Outcome::ReplyRate, 0, 0)].is_nan());
            assert_eq!(s[at::FOLLOW_HIGH], 0.5);
            assert_eq!(s[at::FOLLOW_LOW], 0.0);
            assert!(s[at::FOLLOW_RELATIVE].is_infinite());
        }
        assert_eq!(units(&data, true).len(), 2);
        assert_eq!(units(&data, false).len(), 4);
        let mut at_index: Vec<usize> = Vec::new();
        for o in Outcome::ALL {
            for m in 0..3 {
                for l in 0..3 {
                    at_index.push(at::outcome(o, m, l));
                }
                for l in 1..3 {
                    at_index.push(at::relative(o, m, l));
                }
            }
        }
        at_index.sort();
        at_index.dedup();
        assert_eq!(at_index.len(), 75, "indices of the layout overlap");
        assert_eq!(at::relative(Outcome::FollowRate, 2, 2), at::FOLLOW_LOW - 1);
    }
}
