//! `tokenizer.json` loading with padding and truncation switched off: the models batch and
//! truncate themselves, so the shipped files' padding settings (MiniLM pads to 128) never apply.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use crate::ModelError;

/// Byte range `(start, end)` of a token in its text.
pub type ByteSpan = (usize, usize);

/// A Hugging Face tokenizer that returns unpadded, untruncated token ids.
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, naming the file on failure.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::Read {
                path: path.to_path_buf(),
                what: "tokenizer",
                message: "no such file".to_string(),
            });
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| ModelError::Read {
            path: path.to_path_buf(),
            what: "tokenizer",
            message: e.to_string(),
        })?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| ModelError::Read {
            path: path.to_path_buf(),
            what: "tokenizer",
            message: e.to_string(),
        })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// Token ids of each text, with the tokenizer's special tokens when `special` is set
    /// (BERT's `[CLS]`/`[SEP]`). Texts are encoded in parallel.
    pub fn encode_batch(&self, texts: &[&str], special: bool) -> Result<Vec<Vec<u32>>, ModelError> {
        let encodings = self
            .inner
            .encode_batch_fast(texts.to_vec(), special)
            .map_err(|e| self.error(e))?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// Token ids of one text.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>, ModelError> {
        let encoding = self
            .inner
            .encode_fast(text, special)
            .map_err(|e| self.error(e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of one text with each token's byte range in the text (no special tokens).
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<ByteSpan>), ModelError> {
        let encoding = self.inner.encode(text, false).map_err(|e| self.error(e))?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    /// Text of token ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner.decode(ids, false).map_err(|e| self.error(e))
    }

    /// The id of a token, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The number of tokens in the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn error(&self, e: tokenizers::Error) -> ModelError {
        ModelError::Tokenize {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}
