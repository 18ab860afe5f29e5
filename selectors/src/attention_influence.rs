//! AttentionInfluence (docs/METHODS.md): synthetic key-value retrieval probes,
//! retrieval scores of attention heads from greedy decoding traces, head ranking, and the
//! per-document score `(L_masked - L_base) / L_base`.
//!
//! Nothing here runs a model: the caller tokenizes (through the `count_tokens` closures),
//! decodes and computes losses, and hands the results in.

use std::collections::HashSet;
use std::ops::Range;

use crate::rng::SplitMix64;

/// The instruction that opens every probe (spec 2.1, Appendix A template). The demonstrations
/// and the query are laid out alike (`Question: KEY`, blank line, `Answer: VALUE`, blank
/// line): the paper's template puts the query on the last answer's line, which led SmolLM2 to
/// repeat the last demonstration's value.
pub const INSTRUCTION: &str = "Please extract the value corresponding to the specified key from the following JSON object. Output only the value of the corresponding key and nothing else. The JSON data is as follows: ";

const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Shortest value sentence, in words: shorter ones give the copy test too little to copy.
const MIN_VALUE_WORDS: usize = 3;
/// Longest value sentence considered, in words (the token cap decides in the end).
const MAX_VALUE_WORDS: usize = 40;

/// How probes are generated.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    /// Number of probes.
    pub num_samples: usize,
    /// Question/answer demonstrations before the query.
    pub shots: usize,
    /// Length of each random alphanumeric key.
    pub key_len: usize,
    /// Longest value, in tokens.
    pub value_max_tokens: usize,
    /// Longest prompt plus answer, in tokens; pairs are added up to this limit.
    pub max_total_tokens: usize,
    /// Seed of keys, value choice and pair order.
    pub seed: u64,
}

/// One synthetic retrieval probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// What the model reads: instruction, JSON context, demonstrations and the question,
    /// ending with `Answer:`.
    pub prompt: String,
    /// The expected continuation: a space and the queried value.
    pub answer: String,
    /// Byte range of the queried value inside the JSON context of `prompt` (the needle).
    pub needle: Range<usize>,
    /// Key-value pairs in the context.
    pub pairs: usize,
    /// The keys of the context, in context order.
    pub keys: Vec<String>,
}

/// Why probes cannot be generated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProbeError {
    /// Not enough distinct value sentences for the demonstrations and the query.
    #[error("{found} usable value sentences (at most {max_tokens} tokens, 3-40 words, no quotes or backslashes); a probe needs at least {needed}")]
    TooFewValues {
        /// Usable sentences found.
        found: usize,
        /// Sentences one probe needs.
        needed: usize,
        /// The value token cap.
        max_tokens: usize,
    },
    /// The token limit cannot hold the demonstrations and the query.
    #[error("max_total_tokens = {limit} cannot hold {pairs} key-value pairs with their questions (the smallest probe has {needed} tokens)")]
    LimitTooSmall {
        /// The configured limit.
        limit: usize,
        /// Pairs of the smallest probe.
        pairs: usize,
        /// Tokens of the smallest probe.
        needed: usize,
    },
}

/// Candidate value sentences of a text: pieces split at `.`, `!`, `?` and line breaks,
/// trimmed, that read as prose: 3 to 40 words, ending in `.`, `!` or `?`, at least 80% of
/// the non-space characters letters, and no characters that JSON would escape (quotes,
/// backslashes, control characters), so each appears verbatim in the context.
pub fn candidate_values(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| {
            let words = s.split_whitespace().count();
            let visible = s.chars().filter(|c| !c.is_whitespace()).count();
            let letters = s.chars().filter(|c| c.is_alphabetic()).count();
            (MIN_VALUE_WORDS..=MAX_VALUE_WORDS).contains(&words)
                && s.ends_with(['.', '!', '?'])
                && letters * 5 >= visible * 4
                && !s
                    .chars()
                    .any(|c| c == '"' || c == '\\' || c.is_control() || c == '\u{FFFD}')
        })
}

/// Keeps the distinct candidates of at most `max_tokens` tokens, in first-seen order.
pub fn usable_values(
    candidates: impl IntoIterator<Item = String>,
    max_tokens: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Vec<String> {
    let mut seen = HashSet::new();
    candidates
        .into_iter()
        .filter(|s| count_tokens(s) <= max_tokens && seen.insert(s.clone()))
        .collect()
}

/// The pairs one probe can draw from: a seeded order of the values and a key for each.
struct ProbeDraw<'a> {
    values: Vec<&'a str>,
    keys: Vec<String>,
    /// Position of each pair in the context ordering (pairs sorted by this key).
    order_keys: Vec<u64>,
}

impl<'a> ProbeDraw<'a> {
    fn new(values: &'a [String], cap: usize, key_len: usize, rng: &mut SplitMix64) -> Self {
        let mut chosen: Vec<&str> = values.iter().map(String::as_str).collect();
        // Partial Fisher-Yates: the first `cap` entries are a uniform random ordered sample.
        for i in 0..cap.min(chosen.len()) {
            let j = i + rng.below(chosen.len() - i);
            chosen.swap(i, j);
        }
        chosen.truncate(cap);
        let mut seen = HashSet::new();
        let keys = (0..chosen.len())
            .map(|_| loop {
                let key: String = (0..key_len)
                    .map(|_| KEY_ALPHABET[rng.below(KEY_ALPHABET.len())] as char)
                    .collect();
                if seen.insert(key.clone()) {
                    break key;
                }
            })
            .collect();
        let order_keys = (0..chosen.len()).map(|_| rng.next_u64()).collect();
        Self {
            values: chosen,
            keys,
            order_keys,
        }
    }

    /// The probe made of the first `pairs` pairs: pair 0 is queried, pairs 1..=shots are the
    /// demonstrations; the context lists the pairs in their seeded order.
    fn build(&self, pairs: usize, shots: usize) -> Probe {
        let mut order: Vec<usize> = (0..pairs).collect();
        order.sort_by_key(|&i| (self.order_keys[i], i));
        let mut prompt = String::from(INSTRUCTION);
        prompt.push('{');
        let mut needle = 0..0;
        for (n, &i) in order.iter().enumerate() {
            if n > 0 {
                prompt.push_str(", ");
            }
            prompt.push('"');
            prompt.push_str(&self.keys[i]);
            prompt.push_str("\": \"");
            if i == 0 {
                needle = prompt.len()..prompt.len() + self.values[i].len();
            }
            prompt.push_str(self.values[i]);
            prompt.push('"');
        }
        prompt.push('}');
        for shot in 1..=shots {
            prompt.push_str(&format!(
                "\n\nQuestion: {}\n\nAnswer: {}",
                self.keys[shot], self.values[shot]
            ));
        }
        prompt.push_str(&format!("\n\nQuestion: {}\n\nAnswer:", self.keys[0]));
        Probe {
            prompt,
            answer: format!(" {}", self.values[0]),
            needle,
            pairs,
            keys: order.iter().map(|&i| self.keys[i].clone()).collect(),
        }
    }
}

/// Seeded 3-shot (or `shots`-shot) key-value retrieval probes over `values` (already cut to
/// `value_max_tokens` by [`usable_values`]). Each probe holds as many pairs as fit: the
/// largest count whose prompt plus answer has at most `max_total_tokens` tokens. Probe `i`
/// depends only on the seed, `i` and the values, so the set is deterministic.
pub fn generate_probes(
    values: &[String],
    settings: &ProbeSettings,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Result<Vec<Probe>, ProbeError> {
    let minimum = settings.shots + 1;
    if values.len() < minimum {
        return Err(ProbeError::TooFewValues {
            found: values.len(),
            needed: minimum,
            max_tokens: settings.value_max_tokens,
        });
    }
    let length = |p: &Probe| count_tokens(&format!("{}{}", p.prompt, p.answer));
    (0..settings.num_samples)
        .map(|sample| {
            let mut rng = SplitMix64::new(
                settings
                    .seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(sample as u64),
            );
            // No probe can hold more pairs than the limit has tokens.
            let cap = values.len().min(settings.max_total_tokens.max(minimum));
            let draw = ProbeDraw::new(values, cap, settings.key_len, &mut rng);
            let smallest = draw.build(minimum, settings.shots);
            let needed = length(&smallest);
            if needed > settings.max_total_tokens {
                return Err(ProbeError::LimitTooSmall {
                    limit: settings.max_total_tokens,
                    pairs: minimum,
                    needed,
                });
            }
            // Largest pair count that fits: grow by doubling, then bisect.
            let fits = |pairs: usize| {
                length(&draw.build(pairs, settings.shots)) <= settings.max_total_tokens
            };
            let (mut good, mut bad) = (minimum, None);
            while bad.is_none() {
                let next = (good * 2).min(cap);
                if next == good {
                    break;
                }
                if fits(next) {
                    good = next;
                } else {
                    bad = Some(next);
                }
            }
            if let Some(mut bad) = bad {
                while bad - good > 1 {
                    let mid = (good + bad) / 2;
                    if fits(mid) {
                        good = mid;
                    } else {
                        bad = mid;
                    }
                }
            }
            Ok(draw.build(good, settings.shots))
        })
        .collect()
}

/// One greedy decoding step as retrieval scoring sees it.
#[derive(Debug, Clone, Copy)]
pub struct CopyStep<'a> {
    /// The generated token.
    pub token: u32,
    /// Per query head (layer-major), the most-attended position of the prompt so far.
    pub top_attended: &'a [u32],
}

/// Retrieval score of every head on one probe (spec 2.1, Eq. 4, after Wu et al.): head h
/// copies at a step when its most-attended position lies in the needle span and holds the
/// generated token; its score is the number of distinct needle positions it copied divided
/// by the needle length (so a head that copies every value token scores 1).
pub fn retrieval_scores(
    prompt: &[u32],
    needle: Range<usize>,
    steps: &[CopyStep<'_>],
    heads: usize,
) -> Vec<f64> {
    let len = needle.len();
    if len == 0 {
        return vec![0.0; heads];
    }
    let mut copied = vec![vec![false; len]; heads];
    for step in steps {
        for (h, &pos) in step.top_attended.iter().enumerate().take(heads) {
            let pos = pos as usize;
            if needle.contains(&pos) && prompt.get(pos) == Some(&step.token) {
                copied[h][pos - needle.start] = true;
            }
        }
    }
    copied
        .iter()
        .map(|c| c.iter().filter(|&&x| x).count() as f64 / len as f64)
        .collect()
}

/// Fraction of the needle's tokens (as a multiset) found among the generated tokens: the
/// token-level ROUGE-1 recall Wu et al. use to accept a probe (`require_correct_answer`).
pub fn answer_recall(needle_tokens: &[u32], generated: &[u32]) -> f64 {
    if needle_tokens.is_empty() {
        return 0.0;
    }
    let mut left: Vec<u32> = generated.to_vec();
    let mut hits = 0usize;
    for t in needle_tokens {
        if let Some(i) = left.iter().position(|g| g == t) {
            left.swap_remove(i);
            hits += 1;
        }
    }
    hits as f64 / needle_tokens.len() as f64
}

/// Number of heads kept for a fraction of `total`: `round(total * fraction)`, at least one.
pub fn heads_for_fraction(total: usize, fraction: f64) -> usize {
    ((total as f64 * fraction).round() as usize).clamp(1, total.max(1))
}

/// Indices of the `count` best heads: highest score first, ties by index (layer, head order).
pub fn top_heads(scores: &[f64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(count);
    order
}

/// How base and masked losses combine into a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreFormula {
    /// `(L_masked - L_base) / L_base` (the paper's Eq. 5).
    Relative,
    /// `L_masked - L_base`.
    Absolute,
}

/// The AttentionInfluence score of one document; `None` when a loss is missing (NaN) or the
/// base loss is not positive under the relative formula.
pub fn influence_score(base: f64, masked: f64, formula: ScoreFormula) -> Option<f64> {
    if !base.is_finite() || !masked.is_finite() {
        return None;
    }
    match formula {
        ScoreFormula::Relative if base > 0.0 => Some((masked - base) / base),
        ScoreFormula::Relative => None,
        ScoreFormula::Absolute => Some(masked - base),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words as tokens: a simple, exact tokenizer for the generator tests.
    fn words(s: &str) -> usize {
        s.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == ':')
            .filter(|w| !w.is_empty())
            .count()
    }

    fn values(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("sentence number {i} has {} words in it", 3 + i % 20))
            .collect()
    }

    fn settings(max_total_tokens: usize) -> ProbeSettings {
        ProbeSettings {
            num_samples: 6,
            shots: 3,
            key_len: 32,
            value_max_tokens: 30,
            max_total_tokens,
            seed: 11,
        }
    }

    #[test]
    fn probes_have_unique_alphanumeric_keys_fill_the_limit_and_are_deterministic() {
        let values = values(400);
        let s = settings(1000);
        let probes = generate_probes(&values, &s, &words).unwrap();
        assert_eq!(probes.len(), 6);
        // One pair here is a key (1 token) plus a value (7 tokens): the slack is under two pairs.
        let max_pair = values.iter().map(|v| words(v) + 1).max().unwrap();
        for p in &probes {
            let total = words(&format!("{}{}", p.prompt, p.answer));
            assert!(total <= 1000, "{total}");
            assert!(
                total + max_pair > 1000,
                "{total} leaves room for another pair"
            );
            let unique: HashSet<&String> = p.keys.iter().collect();
            assert_eq!(unique.len(), p.keys.len());
            for k in &p.keys {
                assert_eq!(k.len(), 32);
                assert!(k.bytes().all(|b| b.is_ascii_alphanumeric()));
            }
            let value = &p.prompt[p.needle.clone()];
            assert_eq!(format!(" {value}"), p.answer);
            assert!(p.prompt.ends_with("\n\nAnswer:"));
            assert!(p.prompt.starts_with(INSTRUCTION));
            // Three demonstrations, then the query.
            assert_eq!(p.prompt.matches("\n\nAnswer: ").count(), 3);
            assert_eq!(p.prompt.matches("Question: ").count(), 4);
            // The queried key is in the context exactly once, right before the needle.
            let query_key = p.prompt.rsplit("Question: ").next().unwrap();
            let query_key = query_key.trim_end_matches("\n\nAnswer:");
            assert!(p.prompt[..p.needle.start].ends_with(&format!("\"{query_key}\": \"")));
            // The context is valid JSON with `pairs` distinct keys.
            let start = INSTRUCTION.len();
            let end = p.prompt.find("}\n\n").unwrap() + 1;
            let json: std::collections::BTreeMap<String, String> =
                serde_json_lite(&p.prompt[start..end]);
            assert_eq!(json.len(), p.pairs);
        }
        assert_eq!(generate_probes(&values, &s, &words).unwrap(), probes);
        let other = generate_probes(&values, &ProbeSettings { seed: 12, ..s }, &words).unwrap();
        assert_ne!(other, probes);
    }

    /// Parses the flat `{"k": "v", ...}` objects the generator writes (values hold no quotes).
    fn serde_json_lite(s: &str) -> std::collections::BTreeMap<String, String> {
        let inner = s.strip_prefix('{').unwrap().strip_suffix('}').unwrap();
        inner
            .split("\", \"")
            .map(|pair| {
                let pair = pair.trim_matches('"');
                let (k, v) = pair.split_once("\": \"").unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn too_few_values_or_too_small_a_limit_are_errors() {
        assert_eq!(
            generate_probes(&values(3), &settings(1000), &words),
            Err(ProbeError::TooFewValues {
                found: 3,
                needed: 4,
                max_tokens: 30
            })
        );
        assert!(matches!(
            generate_probes(&values(50), &settings(40), &words),
            Err(ProbeError::LimitTooSmall { pairs: 4, .. })
        ));
    }

    #[test]
    fn candidate_values_are_json_safe_sentences_and_usable_values_respect_the_cap() {
        let text = "Short. This one is long enough to use! Has a \"quote\" inside it.\nback\\slash is not allowed here.\nthree words here.\nno end mark here\nCall 555-1234 or 555-9876 now.";
        let found: Vec<&str> = candidate_values(text).collect();
        assert_eq!(
            found,
            ["This one is long enough to use!", "three words here."]
        );
        let usable = usable_values(
            [
                "a b c".to_string(),
                "a b c".to_string(),
                "one two three four".to_string(),
            ],
            3,
            &words,
        );
        assert_eq!(usable, ["a b c"]);
    }

    #[test]
    fn retrieval_scores_on_synthetic_attention() {
        // Prompt: BOS, filler, needle tokens 10..16 at positions 2..8, filler.
        let prompt: Vec<u32> = vec![1, 5, 10, 11, 12, 13, 14, 15, 6, 7];
        let needle = 2..8;
        let answer = [10u32, 11, 12, 13, 14, 15];
        // Head 0 copies every token; head 1 attends to BOS; head 2 copies 3 of 6; head 3
        // points into the needle at the wrong token.
        let tops: Vec<Vec<u32>> = answer
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let copy = 2 + i as u32;
                let half = if i < 3 { copy } else { 9 };
                vec![copy, 0, half, 2 + ((i as u32 + 1) % 6)]
            })
            .collect();
        let steps: Vec<CopyStep> = answer
            .iter()
            .zip(&tops)
            .map(|(&token, t)| CopyStep {
                token,
                top_attended: t,
            })
            .collect();
        let scores = retrieval_scores(&prompt, needle.clone(), &steps, 4);
        assert_eq!(scores, [1.0, 0.0, 0.5, 0.0]);
        // Copying the same position twice counts once.
        let twice = [steps[0], steps[0]];
        assert_eq!(retrieval_scores(&prompt, needle, &twice, 4)[0], 1.0 / 6.0);
        assert_eq!(answer_recall(&answer, &[10, 11, 12, 99]), 0.5);
        assert_eq!(answer_recall(&[10, 10], &[10]), 0.5);
    }

    #[test]
    fn head_ranking_takes_the_top_fraction_with_ties_by_index() {
        assert_eq!(heads_for_fraction(320, 0.05), 16);
        assert_eq!(heads_for_fraction(270, 0.05), 14);
        assert_eq!(heads_for_fraction(10, 0.01), 1);
        let mut scores = vec![0.0; 320];
        // Twenty heads tie at 0.5: the sixteen lowest indices win.
        for h in (100..300).step_by(10) {
            scores[h] = 0.5;
        }
        scores[7] = 0.9;
        let top = top_heads(&scores, heads_for_fraction(320, 0.05));
        assert_eq!(top.len(), 16);
        assert_eq!(top[0], 7);
        let expected: Vec<usize> = (100..300).step_by(10).take(15).collect();
        assert_eq!(&top[1..], &expected[..]);
    }

    #[test]
    fn scores_by_formula() {
        assert_eq!(influence_score(2.0, 3.0, ScoreFormula::Relative), Some(0.5));
        assert_eq!(influence_score(2.0, 3.0, ScoreFormula::Absolute), Some(1.0));
        assert_eq!(influence_score(2.0, 2.0, ScoreFormula::Relative), Some(0.0));
        assert_eq!(influence_score(f64::NAN, 2.0, ScoreFormula::Relative), None);
        assert_eq!(influence_score(0.0, 2.0, ScoreFormula::Relative), None);
    }
}
