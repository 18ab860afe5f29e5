//! `embedding_similarity`: a selector keeping the pool documents whose embeddings are most
//! similar to a target's (cosine with the target centroid, or the highest cosine with any
//! target document). The target is embedded with the pipeline's `embed` stage model, so both
//! sides share one space; the similarities become the pool column `embedding_similarity`.

use super::selection::{Grouping, SelectorStage};
use super::{Needs, Pool, PoolStage, StageEnv};
use crate::config::embedding_similarity::{EmbeddingSimilarityConfig, SimilarityRule};
use crate::config::EmbedConfig;
use anyhow::{bail, Context, Result};
use gleaner_storage::reader::for_each_text;

/// The pool column holding each document's similarity.
pub const COLUMN: &str = "embedding_similarity";

/// The stage of a config, with the embed stage whose model it uses.
pub struct EmbeddingSimilarityStage {
    config: EmbeddingSimilarityConfig,
    embed: EmbedConfig,
    selector: SelectorStage,
}

/// `v` scaled to unit length (left as is when it is zero).
fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        v.to_vec()
    } else {
        v.iter().map(|x| x / norm).collect()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl EmbeddingSimilarityStage {
    /// The stage of `config`, embedding the target like `embed`; `seed` for provenance.
    pub fn new(config: &EmbeddingSimilarityConfig, embed: &EmbedConfig, seed: u64) -> Self {
        let (size, in_tokens) = config.size().sample();
        EmbeddingSimilarityStage {
            selector: SelectorStage::by_score(
                "embedding_similarity",
                seed,
                size,
                false,
                1.0,
                Grouping::balanced(config.per_source),
                COLUMN,
            )
            .with_tokenizer_budget(in_tokens),
            config: config.clone(),
            embed: embed.clone(),
        }
    }
}

impl PoolStage for EmbeddingSimilarityStage {
    fn needs(&self) -> Needs {
        Needs {
            embeddings: true,
            ..self.selector.needs.clone()
        }
    }

    fn apply(&self, pool: &mut Pool<'_>, env: &StageEnv<'_>) -> Result<()> {
        let c = &self.config;
        let mut texts = Vec::new();
        for_each_text(&c.target_paths, &c.target_text_column, |t| {
            if !t.trim().is_empty() {
                texts.push(t.to_string());
            }
            true
        })
        .with_context(|| format!("at key `{}.target_paths`", env.key))?;
        if texts.is_empty() {
            bail!(
                "at key `{}.target_paths`: no non-empty target document",
                env.key
            );
        }
        let encoder = crate::models::features::load_encoder(self.embed.settings())?;
        let dim = encoder.dim();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let flat = encoder.encode(&refs)?;
        let targets: Vec<Vec<f32>> = flat.chunks_exact(dim).map(normalised).collect();
        let (data, pool_dim) = pool.embeddings()?;
        if !pool.is_empty() && pool_dim != dim {
            bail!(
                "at key `{}`: the pool's embeddings have {pool_dim} values, the embed model's {dim}",
                env.key
            );
        }
        let centroid = {
            let mut sum = vec![0f32; dim];
            for t in &targets {
                sum.iter_mut().zip(t).for_each(|(s, x)| *s += x);
            }
            normalised(&sum)
        };
        let scores: Vec<Option<f64>> = data
            .chunks_exact(dim.max(1))
            .map(|e| {
                let s = match c.similarity {
                    SimilarityRule::Centroid => dot(e, &centroid),
                    SimilarityRule::Max => targets
                        .iter()
                        .map(|t| dot(e, t))
                        .fold(f32::NEG_INFINITY, f32::max),
                };
                Some(f64::from(s))
            })
            .collect();
        pool.set_column(COLUMN, scores);
        self.selector.choose(pool);
        Ok(())
    }
}
