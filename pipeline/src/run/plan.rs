//! Opening the corpus a config names, with the columns its stages read.

use crate::config::{Config, OnBadFileConfig};
use crate::stages::columns::Columns;
use anyhow::Result;
use gleaner_storage::reader::{CorpusReader, OnBadFile};
use gleaner_storage::OnBadRecord;

/// Opens (and validates) the corpus a config names.
pub fn open_corpus(config: &Config) -> Result<CorpusReader> {
    let on_bad = |c: OnBadFileConfig| match c {
        OnBadFileConfig::Error => (OnBadFile::Error, OnBadRecord::Error),
        OnBadFileConfig::Skip => (OnBadFile::Skip, OnBadRecord::Skip),
    };
    let mut reader = CorpusReader::open(
        &config.input.paths,
        Columns::of(config).spec(config),
        on_bad(config.input.on_bad_file).0,
        config.input.batch_size,
    )?;
    let records = config
        .input
        .on_bad_record
        .unwrap_or(config.input.on_bad_file);
    reader.set_on_bad_record(on_bad(records).1);
    Ok(reader)
}
