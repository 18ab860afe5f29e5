//! Column planning: which vector, numeric and string columns the stages read, where each
//! comes from (the input files or a model stage's sidecar) and the position every reader of a
//! batch addresses it by. One [`Columns`] is the schema all stages resolve names through.

use crate::config::{Config, S2lConfig, StageConfig};
use gleaner_storage::reader::ColumnSpec;

/// The vector and numeric columns of a run's batches, in the order `DocBatch::vector` and
/// `DocBatch::score` address them: the input file's own first, then the model stages'.
#[derive(Debug, Clone)]
pub struct Columns {
    /// Columns the model stages produce: (name, is a vector), in stage order.
    produced: Vec<(String, bool)>,
    vectors: Vec<String>,
    scores: Vec<String>,
    /// String columns of the input the stages read (a URL, a language).
    strings: Vec<String>,
}

impl Columns {
    /// The columns `config`'s stages read.
    pub fn of(config: &Config) -> Self {
        let produced: Vec<(String, bool)> = config
            .stages
            .iter()
            .filter_map(|s| match s {
                StageConfig::Embed(c) => Some((c.column.clone(), true)),
                StageConfig::LmScore(c) => Some((c.column.clone(), false)),
                StageConfig::AttentionInfluence(c) => Some((c.column.clone(), false)),
                StageConfig::LossTrajectory(c) => Some((c.column.clone(), true)),
                _ => None,
            })
            .collect();
        let is_produced = |c: &String| produced.iter().any(|p| &p.0 == c);
        // Vectors: the input's embeddings, s2l trajectories read from the file, then the
        // model stages' vectors.
        let mut vectors: Vec<String> = config.input.embedding_column.iter().cloned().collect();
        for stage in &config.stages {
            if let StageConfig::S2l(S2lConfig {
                trajectory_column: Some(column),
                ..
            }) = stage
            {
                if !vectors.contains(column) && !is_produced(column) {
                    vectors.push(column.clone());
                }
            }
        }
        vectors.extend(produced.iter().filter(|p| p.1).map(|p| p.0.clone()));
        // Numbers: the input's columns stages read, then the model stages' numbers.
        let mut scores: Vec<String> = Vec::new();
        for stage in &config.stages {
            let cols: Vec<&String> = match stage {
                StageConfig::ScoreSelect(c) => std::iter::once(&c.score_column)
                    .chain(c.combine_with.as_ref())
                    .collect(),
                StageConfig::ScoreFilter(c) => vec![&c.score_column],
                StageConfig::S2l(c) => c.trajectory_columns.iter().collect(),
                _ => continue,
            };
            for col in cols {
                if !scores.contains(col) && !is_produced(col) {
                    scores.push(col.clone());
                }
            }
        }
        scores.extend(produced.iter().filter(|p| !p.1).map(|p| p.0.clone()));
        let mut strings: Vec<String> = Vec::new();
        for (i, stage) in config.stages.iter().enumerate() {
            let column = match stage {
                StageConfig::UrlFilter(c) => Some(&c.url_column),
                // Not read from the input when an earlier language_id stage writes it.
                StageConfig::C4Badwords(c) => c
                    .language_column
                    .as_ref()
                    .filter(|column| config.language_id_before(i, column).is_none()),
                _ => None,
            };
            if let Some(column) = column.filter(|c| !strings.contains(c)) {
                strings.push(column.clone());
            }
        }
        Columns {
            produced,
            vectors,
            scores,
            strings,
        }
    }

    /// Position of numeric column `name` (planned by [`Columns::of`] for every stage that
    /// reads it).
    pub fn score(&self, name: &str) -> usize {
        self.scores
            .iter()
            .position(|x| x == name)
            .unwrap_or_else(|| panic!("planned: numeric column `{name}`"))
    }

    /// Position of string column `name` (planned by [`Columns::of`] for every stage that
    /// reads it).
    pub fn string(&self, name: &str) -> usize {
        self.strings
            .iter()
            .position(|x| x == name)
            .unwrap_or_else(|| panic!("planned: string column `{name}`"))
    }

    /// Position of vector column `name`, when it is one.
    pub fn vector(&self, name: &str) -> Option<usize> {
        self.vectors.iter().position(|v| v == name)
    }

    /// The column spec asked of the input files (model-stage columns come from sidecars).
    pub fn spec(&self, config: &Config) -> ColumnSpec {
        let from_file = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter(|n| !self.produced.iter().any(|p| &p.0 == *n))
                .cloned()
                .collect()
        };
        ColumnSpec {
            text: config.input.text_column.clone(),
            id: config.input.id_column.clone(),
            source: config.input.source_column.clone(),
            metadata: config.input.metadata_columns.clone(),
            vectors: from_file(&self.vectors),
            scores: from_file(&self.scores),
            strings: self.strings.clone(),
        }
    }
}
