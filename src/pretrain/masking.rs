//! BERT's choice of tokens for masked-LM training (Devlin et al., NAACL 2019, §3.1): each real
//! token is chosen with probability p; a chosen token is replaced by the mask token 80% of the
//! time, by a random token 10%, and left as it is 10%, so that the encoder cannot learn that
//! only masked positions matter. The model predicts the original token at every chosen one.

use crate::rng::SplitMix64;
use crate::text::Encoded;

/// How tokens are chosen and replaced.
#[derive(Clone, Copy, Debug)]
pub struct Masker {
    /// The tokenizer's mask token (`[MASK]`, `<mask>`).
    pub mask_id: u32,
    /// Random replacements are drawn from the ids below this.
    pub vocab_size: u32,
    /// The share of a text's real tokens chosen.
    pub prob: f64,
}

/// A text with its chosen tokens replaced, and what the model predicts there.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskedText {
    pub ids: Vec<u32>,
    /// (position, original id) of each chosen token.
    pub targets: Vec<(usize, u32)>,
}

impl Masker {
    /// One text's choice. Special tokens (`[CLS]`, `[SEP]`) are never chosen.
    pub fn mask(&self, text: &Encoded, rng: &mut SplitMix64) -> MaskedText {
        let mut ids = text.ids.clone();
        let mut targets = Vec::new();
        for (i, (&id, &special)) in text.ids.iter().zip(&text.special).enumerate() {
            if special || rng.next_f64() >= self.prob {
                continue;
            }
            targets.push((i, id));
            let r = rng.next_f64();
            if r < 0.8 {
                ids[i] = self.mask_id;
            } else if r < 0.9 {
                ids[i] = rng.below(self.vocab_size as usize) as u32;
            }
        }
        MaskedText { ids, targets }
    }

    /// A batch's choice, with at least one chosen token where any text has a real one: a
    /// batch of short texts can draw none, and its loss would be 0 / 0.
    pub fn mask_batch(&self, texts: &[&Encoded], rng: &mut SplitMix64) -> Vec<MaskedText> {
        let mut masked: Vec<MaskedText> = texts.iter().map(|t| self.mask(t, rng)).collect();
        if masked.iter().all(|m| m.targets.is_empty()) {
            let first_real = texts.iter().enumerate().find_map(|(row, t)| {
                let i = t.special.iter().position(|&s| !s)?;
                Some((row, i, t.ids[i]))
            });
            if let Some((row, i, id)) = first_real {
                masked[row].ids[i] = self.mask_id;
                masked[row].targets.push((i, id));
            }
        }
        masked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> Encoded {
        // [CLS] tokens... [SEP], ids 1000 + position.
        Encoded {
            ids: (0..len as u32).map(|i| 1000 + i).collect(),
            type_ids: vec![0; len],
            offsets: (0..len).map(|i| (i, i + 1)).collect(),
            special: (0..len).map(|i| i == 0 || i == len - 1).collect(),
            truncated: false,
        }
    }

    const MASKER: Masker = Masker {
        mask_id: 4,
        vocab_size: 500,
        prob: 0.15,
    };

    #[test]
    fn a_share_of_real_tokens_is_chosen_and_eighty_percent_of_those_masked() {
        let t = text(64);
        let mut rng = SplitMix64::new(7);
        let (mut chosen, mut masked, mut random, mut kept) = (0, 0, 0, 0);
        for _ in 0..2000 {
            let m = MASKER.mask(&t, &mut rng);
            for &(i, original) in &m.targets {
                assert!(!t.special[i], "a special token was chosen");
                assert_eq!(original, t.ids[i]);
                chosen += 1;
                match m.ids[i] {
                    4 => masked += 1,
                    id if id == original => kept += 1,
                    id => {
                        assert!(id < 500, "a replacement outside the vocabulary");
                        random += 1
                    }
                }
            }
            // Tokens not chosen are left as they are.
            for (i, (&a, &b)) in m.ids.iter().zip(&t.ids).enumerate() {
                if !m.targets.iter().any(|&(p, _)| p == i) {
                    assert_eq!(a, b);
                }
            }
        }
        let share = chosen as f64 / (2000.0 * 62.0);
        assert!((share - 0.15).abs() < 0.01, "{share} of the tokens chosen");
        let frac = |n: i32| n as f64 / chosen as f64;
        assert!((frac(masked) - 0.8).abs() < 0.02, "{} masked", frac(masked));
        // A random replacement may draw the token itself (1 in 500): counted as kept.
        assert!((frac(random) - 0.1).abs() < 0.02, "{} random", frac(random));
        assert!((frac(kept) - 0.1).abs() < 0.02, "{} kept", frac(kept));
    }

    #[test]
    fn the_same_seed_chooses_the_same_tokens() {
        let t = text(40);
        let draw = |seed| MASKER.mask(&t, &mut SplitMix64::new(seed));
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn a_batch_that_drew_nothing_gets_one_masked_token() {
        let short = text(3); // one real token
        let texts = vec![&short; 2];
        let never = Masker {
            prob: 0.0,
            ..MASKER
        };
        let m = never.mask_batch(&texts, &mut SplitMix64::new(1));
        assert_eq!(m[0].targets, vec![(1, 1001)]);
        assert_eq!(m[0].ids[1], 4);
        assert!(m[1].targets.is_empty());
        let only_specials = text(2);
        let m = never.mask_batch(&[&only_specials], &mut SplitMix64::new(1));
        assert!(m[0].targets.is_empty(), "nothing to choose");
    }
}
