//! The `attention_influence` stage's model work (docs/METHODS.md): retrieval-head
//! detection with synthetic key-value probes and greedy decoding, the head report (table and
//! layer x head heat map), and per-document scores from base and masked losses.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use gleaner_embed::{CausalLm, HeadId, HeadMask, UniformScope};
use gleaner_selectors::attention_influence::{
    answer_recall, candidate_values, generate_probes, influence_score, retrieval_scores, top_heads,
    usable_values, CopyStep, Probe, ProbeSettings, ScoreFormula,
};
use gleaner_storage::atomic::write_bytes;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{AttentionInfluenceConfig, ScoreFormulaConfig, UniformScopeConfig};

/// Candidate value sentences collected at most, whatever the documents hold.
const MAX_CANDIDATES: usize = 200_000;
/// A probe counts under `require_correct_answer` when its answer recalls more than this.
const MIN_ANSWER_RECALL: f64 = 0.5;

/// Where the probes' values come from.
#[derive(Debug, Clone)]
pub struct ValueSource {
    /// Parquet files, directories or globs.
    pub paths: Vec<String>,
    /// Their text column.
    pub text_column: String,
}

/// The heads a stage masks and, when detected, every head's retrieval score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadReport {
    /// Decoder layers of the model.
    pub layers: usize,
    /// Query heads per layer.
    pub heads_per_layer: usize,
    /// The masked heads as `[layer, head]`, best first (as given when not detected).
    pub chosen: Vec<[usize; 2]>,
    /// Mean retrieval score of every head, layer-major; `None` when heads were given.
    pub scores: Option<Vec<f64>>,
    /// Probes decoded.
    pub probes: usize,
    /// Probes that counted (all, unless `require_correct_answer`).
    pub accepted: usize,
    /// Mean key-value pairs per probe.
    pub mean_pairs: f64,
    /// Mean prompt tokens per probe.
    pub mean_prompt_tokens: f64,
    /// Mean fraction of the value's tokens the greedy answers recalled.
    pub mean_answer_recall: f64,
    /// Seconds spent detecting.
    pub seconds: f64,
}

impl HeadReport {
    /// A report for heads given in the config.
    pub fn given(lm: &CausalLm, heads: &[[usize; 2]]) -> Result<Self> {
        let config = lm.config();
        for (i, &[layer, head]) in heads.iter().enumerate() {
            if layer >= config.num_hidden_layers || head >= config.num_attention_heads {
                bail!(
                    "`heads[{i}]` = [{layer}, {head}] is outside the model's {} layers x {} heads",
                    config.num_hidden_layers,
                    config.num_attention_heads
                );
            }
        }
        Ok(Self {
            layers: config.num_hidden_layers,
            heads_per_layer: config.num_attention_heads,
            chosen: heads.to_vec(),
            scores: None,
            probes: 0,
            accepted: 0,
            mean_pairs: 0.0,
            mean_prompt_tokens: 0.0,
            mean_answer_recall: 0.0,
            seconds: 0.0,
        })
    }

    /// The mask over the chosen heads.
    pub fn mask(&self, scope: UniformScopeConfig) -> HeadMask {
        let heads = self
            .chosen
            .iter()
            .map(|&[layer, head]| HeadId { layer, head })
            .collect();
        HeadMask::new(heads).with_scope(match scope {
            UniformScopeConfig::Visible => UniformScope::Visible,
            UniformScopeConfig::Full => UniformScope::Full,
        })
    }

    /// File name of the heat map for a stage writing `column`.
    pub fn heatmap_name(column: &str) -> String {
        format!("attention_heads-{column}.png")
    }

    /// Appends the report section: how heads were found and the chosen heads with scores.
    pub fn render_markdown(&self, s: &mut String, column: &str) {
        use std::fmt::Write;
        let _ = writeln!(s, "## Masked heads of `{column}`\n");
        match &self.scores {
            None => {
                let _ = writeln!(s, "{} heads given in the config.\n", self.chosen.len());
            }
            Some(scores) => {
                let _ = writeln!(
                    s,
                    "Top {} of {} query heads ({} layers x {}) by retrieval score over {} probes ({} counted; {:.1} key-value pairs and {:.0} prompt tokens on average; greedy answers recalled {:.0}% of the value tokens), found in {:.1} s. Heat map: `{}`.\n",
                    self.chosen.len(),
                    self.layers * self.heads_per_layer,
                    self.layers,
                    self.heads_per_layer,
                    self.probes,
                    self.accepted,
                    self.mean_pairs,
                    self.mean_prompt_tokens,
                    100.0 * self.mean_answer_recall,
                    self.seconds,
                    Self::heatmap_name(column)
                );
                let _ = writeln!(
                    s,
                    "| rank | layer | head | retrieval score |\n|---:|---:|---:|---:|"
                );
                for (rank, &[layer, head]) in self.chosen.iter().enumerate() {
                    let score = scores[layer * self.heads_per_layer + head];
                    let _ = writeln!(s, "| {} | {layer} | {head} | {score:.4} |", rank + 1);
                }
                let _ = writeln!(s);
            }
        }
    }

    /// Writes the layer x head heat map of retrieval scores as a PNG (rows are layers from
    /// the top, columns heads; white is 0, dark red the highest score; chosen heads framed in
    /// black). Nothing is written for given heads.
    pub fn write_heatmap(&self, path: &Path) -> Result<()> {
        let Some(scores) = &self.scores else {
            return Ok(());
        };
        const CELL: usize = 20;
        let (width, height) = (self.heads_per_layer * CELL, self.layers * CELL);
        let max = scores.iter().copied().fold(0.0, f64::max).max(1e-12);
        let mut pixels = vec![0u8; width * height * 3];
        for layer in 0..self.layers {
            for head in 0..self.heads_per_layer {
                let t = (scores[layer * self.heads_per_layer + head] / max).clamp(0.0, 1.0);
                let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
                let fill = [lerp(255.0, 165.0), lerp(255.0, 0.0), lerp(255.0, 38.0)];
                let chosen = self.chosen.contains(&[layer, head]);
                for y in 0..CELL {
                    for x in 0..CELL {
                        let edge = x == 0 || y == 0 || x == CELL - 1 || y == CELL - 1;
                        let frame = chosen && (x < 2 || y < 2 || x >= CELL - 2 || y >= CELL - 2);
                        let colour = if frame {
                            [0, 0, 0]
                        } else if edge {
                            [200, 200, 200]
                        } else {
                            fill
                        };
                        let at = ((layer * CELL + y) * width + head * CELL + x) * 3;
                        pixels[at..at + 3].copy_from_slice(&colour);
                    }
                }
            }
        }
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&pixels)?;
            writer.finish()?;
        }
        write_bytes(path, &bytes)?;
        Ok(())
    }
}

/// Reads value sentences from the first `max_documents` documents of `source`.
fn read_values(source: &ValueSource, max_documents: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut documents = 0;
    gleaner_storage::reader::for_each_text(&source.paths, &source.text_column, |text| {
        if documents == max_documents || out.len() >= MAX_CANDIDATES {
            return false;
        }
        documents += 1;
        out.extend(candidate_values(text).map(String::from));
        true
    })
    .with_context(|| format!("reading probe values from {:?}", source.paths))?;
    Ok(out)
}

/// The indices of the tokens whose byte range overlaps `needle`.
fn needle_tokens(
    offsets: &[(usize, usize)],
    needle: &std::ops::Range<usize>,
) -> std::ops::Range<usize> {
    let inside: Vec<usize> = offsets
        .iter()
        .enumerate()
        .filter(|(_, &(start, end))| start < needle.end && end > needle.start)
        .map(|(i, _)| i)
        .collect();
    match (inside.first(), inside.last()) {
        (Some(&a), Some(&b)) => a..b + 1,
        _ => 0..0,
    }
}

/// What decoding one probe gave: per-head retrieval scores and the answer's recall.
struct ProbeOutcome {
    scores: Vec<f64>,
    recall: f64,
    prompt_tokens: usize,
}

fn run_probe(lm: &CausalLm, probe: &Probe, max_decode: usize) -> Result<ProbeOutcome> {
    let tokenizer = lm.tokenizer();
    let (ids, offsets) = tokenizer.encode_with_offsets(&probe.prompt)?;
    let needle = needle_tokens(&offsets, &probe.needle);
    let eos = lm.config().eos_token_id;
    let stop = |token: u32| {
        Some(token) == eos || tokenizer.decode(&[token]).is_ok_and(|t| t.contains('\n'))
    };
    let steps = lm.greedy_decode(&ids, max_decode, stop)?;
    let copy: Vec<CopyStep> = steps
        .iter()
        .map(|s| CopyStep {
            token: s.token,
            top_attended: &s.top_attended,
        })
        .collect();
    let config = lm.config();
    let heads = config.num_hidden_layers * config.num_attention_heads;
    let generated: Vec<u32> = steps.iter().map(|s| s.token).collect();
    Ok(ProbeOutcome {
        scores: retrieval_scores(&ids, needle.clone(), &copy, heads),
        recall: answer_recall(&ids[needle], &generated),
        prompt_tokens: ids.len(),
    })
}

/// Finds the retrieval heads of `lm` (spec 2.1): seeded probes from `values`, greedy decoding
/// with per-head attention peaks, mean retrieval score per head over the counted probes, and
/// the top heads (ties by layer, then head). `key` names the stage in errors.
pub fn detect_heads(
    lm: &CausalLm,
    c: &AttentionInfluenceConfig,
    values: &ValueSource,
    seed: u64,
    key: &str,
) -> Result<HeadReport> {
    let started = Instant::now();
    let candidates = read_values(values, c.probe.max_value_documents)?;
    let count_tokens = |s: &str| {
        lm.tokenizer()
            .encode(s, false)
            .map(|ids| ids.len())
            .unwrap_or(usize::MAX)
    };
    let usable = usable_values(candidates, c.probe.value_max_tokens, &count_tokens);
    let settings = ProbeSettings {
        num_samples: c.probe.num_samples,
        shots: c.probe.shots,
        key_len: c.probe.key_len,
        value_max_tokens: c.probe.value_max_tokens,
        max_total_tokens: c.probe.max_total_tokens,
        seed,
    };
    let positions = lm.config().max_position_embeddings;
    if settings.max_total_tokens + c.max_decode_tokens > positions {
        bail!(
            "at key `{key}.probe.max_total_tokens`: {} plus max_decode_tokens {} exceeds the model's {positions} positions",
            settings.max_total_tokens,
            c.max_decode_tokens
        );
    }
    let probes = generate_probes(&usable, &settings, &count_tokens)
        .map_err(|e| anyhow!("at key `{key}.probe`: {e} (from {:?})", values.paths))?;
    let outcomes = probes
        .par_iter()
        .map(|p| run_probe(lm, p, c.max_decode_tokens))
        .collect::<Result<Vec<_>, _>>()?;
    let config = lm.config();
    let total = config.num_hidden_layers * config.num_attention_heads;
    let mut sums = vec![0.0; total];
    let mut accepted = 0;
    for o in &outcomes {
        if c.require_correct_answer && o.recall <= MIN_ANSWER_RECALL {
            continue;
        }
        accepted += 1;
        sums.iter_mut().zip(&o.scores).for_each(|(s, x)| *s += x);
    }
    let scores: Vec<f64> = sums
        .iter()
        .map(|s| {
            if accepted > 0 {
                s / accepted as f64
            } else {
                0.0
            }
        })
        .collect();
    if accepted == 0 {
        tracing::warn!(
            "{key}: no probe answer recalled more than half its value; every head scores 0 and ties are broken by (layer, head)"
        );
    }
    let per_layer = config.num_attention_heads;
    let chosen = top_heads(&scores, c.heads_to_keep(total))
        .into_iter()
        .map(|h| [h / per_layer, h % per_layer])
        .collect();
    let n = probes.len().max(1) as f64;
    Ok(HeadReport {
        layers: config.num_hidden_layers,
        heads_per_layer: per_layer,
        chosen,
        scores: Some(scores),
        probes: probes.len(),
        accepted,
        mean_pairs: probes.iter().map(|p| p.pairs as f64).sum::<f64>() / n,
        mean_prompt_tokens: outcomes.iter().map(|o| o.prompt_tokens as f64).sum::<f64>() / n,
        mean_answer_recall: outcomes.iter().map(|o| o.recall).sum::<f64>() / n,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The heads of a stage: read from `cache` (a previous run's `heads.json`), or given, or
/// detected and then saved there.
pub fn heads_for_stage(
    lm: &CausalLm,
    c: &AttentionInfluenceConfig,
    values: &ValueSource,
    seed: u64,
    key: &str,
    cache: &Path,
) -> Result<HeadReport> {
    if let Some(report) = cached_heads(cache)? {
        return Ok(report);
    }
    let report = if c.heads.is_empty() {
        detect_heads(lm, c, values, seed, key)?
    } else {
        HeadReport::given(lm, &c.heads).with_context(|| format!("at key `{key}.heads`"))?
    };
    if let Some(dir) = cache.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_bytes(cache, &serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}

/// A previously saved head report, if any.
pub fn cached_heads(cache: &Path) -> Result<Option<HeadReport>> {
    if !cache.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(cache).with_context(|| format!("reading {}", cache.display()))?;
    let report = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{}: not a head report; delete it to detect again",
            cache.display()
        )
    })?;
    Ok(Some(report))
}

/// AttentionInfluence scores of texts: base and masked mean losses, combined by `formula`;
/// `None` where a text has fewer than two tokens.
pub fn score_texts(
    lm: &CausalLm,
    mask: &HeadMask,
    formula: ScoreFormulaConfig,
    texts: &[&str],
) -> Result<Vec<Option<f64>>> {
    let ids = lm.tokenize(texts)?;
    let base = lm.sequence_document_losses(&ids, None);
    let masked = lm.sequence_document_losses(&ids, Some(mask));
    let formula = match formula {
        ScoreFormulaConfig::Relative => ScoreFormula::Relative,
        ScoreFormulaConfig::Absolute => ScoreFormula::Absolute,
    };
    Ok(base
        .iter()
        .zip(&masked)
        .map(|(b, m)| influence_score(f64::from(b.mean_nll), f64::from(m.mean_nll), formula))
        .collect())
}
