//! Quad's influence score (`specs/methods.md` 1.3-1.4) on the causal LM: a candidate window's
//! gradient at chosen linear layers, compared by cosine with the (EK-)FAC-preconditioned
//! gradients of a reference set; a document scores the mean over its windows.
//!
//! `q(z) = (1/|D_r|) Σ_r <normalize(P vec(g_z)), normalize(P vec((H+λI)⁻¹ g_r))>`, with the
//! same layers on both sides and `P` a seeded Rademacher projection (or none: exact cosines,
//! the better choice on a CPU with a few layers, where the projection costs more than it saves).

use anyhow::{bail, Result};
use gleaner_embed::{CausalLm, LinearId};
use gleaner_selectors::quad::curvature::{KroneckerFactors, LayerExample, Preconditioner};
use gleaner_selectors::quad::projection::RademacherProjection;
use gleaner_selectors::quad::windows::{document_score, windows, WindowConfig};

/// How reference gradients are preconditioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curvature {
    /// No preconditioning (LESS/TracIn-style gradient cosine).
    Identity,
    /// K-FAC: `(S ⊗ A + λI)⁻¹`.
    Kfac,
    /// Eigenvalue-corrected K-FAC.
    Ekfac,
}

/// Settings of the influence score.
#[derive(Debug, Clone, PartialEq)]
pub struct InfluenceSettings {
    /// Linear layers whose weight gradients are compared.
    pub layers: Vec<LinearId>,
    /// Preconditioning of the reference gradients.
    pub curvature: Curvature,
    /// Damping λ.
    pub damping: f64,
    /// Projection width k; 0 compares the full gradients.
    pub proj_dim: usize,
    /// Projection seed.
    pub proj_seed: u64,
    /// Candidate windows.
    pub windows: WindowConfig,
    /// Score of a document without a window.
    pub empty_doc_score: f64,
}

/// Scores candidate documents against a fitted reference set.
pub struct InfluenceScorer<'a> {
    lm: &'a CausalLm,
    settings: InfluenceSettings,
    /// Mean of the unit vectors of the preconditioned (and projected) reference gradients:
    /// `q` is linear in them, so their mean is all a candidate needs, whatever the reference
    /// set's size.
    reference: Vec<f64>,
    /// Number of reference examples.
    reference_count: usize,
}

/// Per-sequence weight gradients of the chosen layers: one entry per sequence, each the
/// layers' `[out x in]` gradients concatenated in layer order, plus the layer examples
/// (inputs and output gradients) when `keep_examples` is set.
struct SequenceGradients {
    flat: Vec<Vec<f64>>,
    /// Per layer, per sequence: (inputs, output_grads).
    examples: Vec<Vec<(Vec<f32>, Vec<f32>)>>,
}

impl<'a> InfluenceScorer<'a> {
    fn gradients(
        lm: &CausalLm,
        layers: &[LinearId],
        sequences: &[Vec<u32>],
        keep_examples: bool,
    ) -> Result<SequenceGradients> {
        let mut flat = vec![Vec::new(); sequences.len()];
        let mut examples = vec![Vec::new(); layers.len()];
        for (s, sequence) in sequences.iter().enumerate() {
            let per_layer = lm.sequence_gradients(&[sequence.as_slice()], layers)?;
            // The model returns taps in module order; put them in the settings' order.
            for (l, id) in layers.iter().enumerate() {
                let layer = per_layer
                    .iter()
                    .find(|g| g.id == *id)
                    .expect("every tapped layer reports gradients");
                let sample = &layer.samples[0];
                flat[s].extend(sample.weight.iter().map(|&v| f64::from(v)));
                if keep_examples {
                    examples[l].push((sample.inputs.clone(), sample.output_grads.clone()));
                }
            }
        }
        Ok(SequenceGradients { flat, examples })
    }

    /// Projects (when configured) and normalises a flat gradient.
    fn unit(&self, v: Vec<f64>) -> Vec<f64> {
        unit(&self.settings, v)
    }

    /// Fits the preconditioner on `fit` sequences and preconditions the gradients of the
    /// `reference` sequences (each truncated to the window length). Errors name empty sets
    /// and sequences under two tokens.
    pub fn fit(
        lm: &'a CausalLm,
        settings: InfluenceSettings,
        reference: &[Vec<u32>],
        fit: &[Vec<u32>],
    ) -> Result<Self> {
        if reference.is_empty() {
            bail!("the reference set is empty");
        }
        let cut = |s: &[Vec<u32>]| -> Vec<Vec<u32>> {
            s.iter()
                .map(|x| x[..x.len().min(settings.windows.len)].to_vec())
                .collect()
        };
        let (reference, fit) = (cut(reference), cut(fit));
        if let Some(i) = reference.iter().chain(&fit).position(|s| s.len() < 2) {
            bail!("reference or fit example {i} has fewer than two tokens");
        }
        let config = lm.config();
        let preconditioners: Vec<Option<Preconditioner>> =
            if settings.curvature == Curvature::Identity {
                vec![None; settings.layers.len()]
            } else {
                let fitted = Self::gradients(lm, &settings.layers, &fit, true)?;
                settings
                    .layers
                    .iter()
                    .zip(&fitted.examples)
                    .map(|(id, examples)| {
                        let (inputs, outputs) = config.linear_shape(id.kind);
                        let examples: Vec<LayerExample> = examples
                            .iter()
                            .map(|(x, g)| LayerExample {
                                inputs: x,
                                output_grads: g,
                            })
                            .collect();
                        let factors = KroneckerFactors::fit(inputs, outputs, &examples);
                        Some(match settings.curvature {
                            Curvature::Kfac => Preconditioner::kfac(&factors, settings.damping),
                            _ => Preconditioner::ekfac(&factors, &examples, settings.damping),
                        })
                    })
                    .collect()
            };
        let raw = Self::gradients(lm, &settings.layers, &reference, false)?;
        let mut scorer = Self {
            lm,
            settings,
            reference: Vec::new(),
            reference_count: raw.flat.len(),
        };
        for g in raw.flat {
            let mut out = Vec::with_capacity(g.len());
            let mut offset = 0;
            for (id, p) in scorer.settings.layers.iter().zip(&preconditioners) {
                let (inputs, outputs) = config.linear_shape(id.kind);
                let block = &g[offset..offset + inputs * outputs];
                match p {
                    Some(p) => out.extend(p.apply(block)),
                    None => out.extend_from_slice(block),
                }
                offset += inputs * outputs;
            }
            let v = scorer.unit(out);
            if scorer.reference.is_empty() {
                scorer.reference = vec![0.0; v.len()];
            }
            let share = 1.0 / scorer.reference_count as f64;
            for (m, x) in scorer.reference.iter_mut().zip(v) {
                *m += x * share;
            }
        }
        Ok(scorer)
    }

    /// Number of reference examples.
    pub fn reference_count(&self) -> usize {
        self.reference_count
    }

    /// The settings.
    pub fn settings(&self) -> &InfluenceSettings {
        &self.settings
    }

    /// `q` of one token sequence (a window): mean cosine with the reference vectors.
    pub fn window_score(&self, window: &[u32]) -> Result<f64> {
        let g = Self::gradients(self.lm, &self.settings.layers, &[window.to_vec()], false)?;
        let u = self.unit(g.flat.into_iter().next().expect("one sequence"));
        Ok(self.reference.iter().zip(&u).map(|(a, b)| a * b).sum())
    }

    /// A document's score: its tokens (plus the end-of-sequence token when the model has
    /// one) cut into windows, the mean of the windows' scores, or `empty_doc_score`.
    /// Returns the score and the number of windows (forward+backward passes).
    pub fn document_score(&self, ids: &[u32]) -> Result<(f64, usize)> {
        let mut ids = ids.to_vec();
        if let Some(eos) = self.lm.config().eos_token_id {
            ids.push(eos);
        }
        let ranges = windows(ids.len(), &self.settings.windows);
        let scores = ranges
            .iter()
            .map(|r| self.window_score(&ids[r.clone()]))
            .collect::<Result<Vec<_>>>()?;
        Ok((
            document_score(&scores, self.settings.empty_doc_score),
            ranges.len(),
        ))
    }
}

/// Projects (when `proj_dim > 0`) and L2-normalises.
fn unit(settings: &InfluenceSettings, v: Vec<f64>) -> Vec<f64> {
    let v = if settings.proj_dim > 0 {
        RademacherProjection {
            dim: settings.proj_dim,
            seed: settings.proj_seed,
        }
        .project(&v)
    } else {
        v
    };
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.into_iter().map(|x| x / norm).collect()
    } else {
        v
    }
}
