//! Hive-style partition directories, as Spark, Hive, pyarrow's `write_to_dataset` and polars
//! write them: `source=web/year=2024/part-0.parquet`. A column the config reads that the
//! input files do not have is taken from the `name=value` directories above each file, as
//! pyarrow's and DuckDB's hive partitioning do. A column whose values are all integers is
//! read as int64, any other as strings.

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::DataType;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The value Hive, Spark and pyarrow write for a null partition value.
const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// One `name=value` directory of a file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathColumn {
    /// The column name (the part before `=`).
    pub name: String,
    /// The percent-decoded value; `None` for Hive's null marker.
    pub value: Option<String>,
}

/// The `name=value` directories of `path` (local or an object-store URL), outermost
/// first. Values are percent-decoded (pyarrow and Spark escape `/`, `=`, spaces and the
/// like); a value that does not decode to UTF-8 is kept as written.
pub fn hive_partitions(path: &Path) -> Vec<PathColumn> {
    let Some(parent) = path.parent() else {
        return Vec::new();
    };
    // An object-store URL percent-encodes its key once more: its directory names are
    // decoded to the key's own before the partition values are.
    let is_url = path.to_str().is_some_and(|p| p.contains("://"));
    parent
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .map(|dir| match is_url {
            true => percent_encoding::percent_decode_str(dir)
                .decode_utf8()
                .map_or(Cow::Borrowed(dir), |d| d),
            false => Cow::Borrowed(dir),
        })
        .filter_map(|dir| {
            dir.split_once('=')
                .map(|(name, value)| (name.to_string(), value.to_string()))
        })
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, value)| PathColumn {
            value: (value != NULL_PARTITION).then(|| {
                percent_encoding::percent_decode_str(&value)
                    .decode_utf8()
                    .map_or_else(|_| value.clone(), |v| v.into_owned())
            }),
            name,
        })
        .collect()
}

/// The Arrow type of each partition column over the files `paths`: int64 when every value
/// the column has is an integer written without a leading zero or `+` (so that reading it as
/// a number loses nothing), utf8 otherwise. A column with nulls only is utf8.
pub fn column_types<'a>(paths: impl IntoIterator<Item = &'a Path>) -> HashMap<String, DataType> {
    // Per column: whether every value is an integer, and whether it has a value at all.
    let mut seen: HashMap<String, (bool, bool)> = HashMap::new();
    for path in paths {
        for column in hive_partitions(path) {
            let (integers, any) = seen.entry(column.name).or_insert((true, false));
            if let Some(value) = column.value.as_deref() {
                *integers &= is_plain_integer(value);
                *any = true;
            }
        }
    }
    seen.into_iter()
        .map(|(name, (integers, any))| {
            let data_type = if integers && any {
                DataType::Int64
            } else {
                DataType::Utf8
            };
            (name, data_type)
        })
        .collect()
}

/// Whether `value` is an i64 written as Rust and Python print one.
fn is_plain_integer(value: &str) -> bool {
    value.parse::<i64>().is_ok_and(|n| n.to_string() == value)
}

/// `rows` copies of a partition value as an array of `data_type` (from [`column_types`]).
pub fn constant_column(value: Option<&str>, data_type: &DataType, rows: usize) -> ArrayRef {
    match data_type {
        DataType::Int64 => Arc::new(Int64Array::from(vec![
            value.and_then(|v| v
                .parse::<i64>()
                .ok());
            rows
        ])),
        _ => Arc::new(StringArray::from(vec![value; rows])),
    }
}

/// The innermost of `columns` named `name` (a name repeated deeper in the path wins).
pub fn find<'a>(columns: &'a [PathColumn], name: &str) -> Option<&'a PathColumn> {
    columns.iter().rev().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    fn column(name: &str, value: Option<&str>) -> PathColumn {
        PathColumn {
            name: name.into(),
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn name_value_directories_are_columns_with_decoded_values_and_nulls() {
        // The directory names pyarrow 26 wrote for the values "docs & refs/v2" and null.
        let path = Path::new(
            "/data/corpus/source=s1/group=docs%20%26%20refs%2Fv2/kind=__HIVE_DEFAULT_PARTITION__/part-0.parquet",
        );
        assert_eq!(
            hive_partitions(path),
            vec![
                column("source", Some("s1")),
                column("group", Some("docs & refs/v2")),
                column("kind", None),
            ]
        );
    }

    #[test]
    fn object_store_urls_plain_directories_and_file_names_are_not_columns() {
        let path = Path::new("s3://bucket/crawl/lang=en/a=b.parquet");
        assert_eq!(hive_partitions(path), vec![column("lang", Some("en"))]);
        // The key `group=a%20b/` (as pyarrow writes the value "a b") in a URL.
        let path = Path::new("s3://bucket/group=a%2520b/f.parquet");
        assert_eq!(hive_partitions(path), vec![column("group", Some("a b"))]);
        assert!(hive_partitions(Path::new("/data/=x/plain/f.jsonl")).is_empty());
        assert!(hive_partitions(Path::new("f.parquet")).is_empty());
    }

    #[test]
    fn integer_columns_are_int64_and_the_rest_strings() {
        let paths = [
            "/d/year=2023/lang=en/month=07/n=__HIVE_DEFAULT_PARTITION__/a.parquet",
            "/d/year=2024/lang=de/month=12/n=__HIVE_DEFAULT_PARTITION__/b.parquet",
            "/d/year=-5/lang=7/month=1/c.parquet",
        ];
        let types = column_types(paths.iter().map(Path::new));
        assert_eq!(types["year"], DataType::Int64);
        // A letter, a leading zero (`07` would read back as `7`) or only nulls: strings.
        assert_eq!(types["lang"], DataType::Utf8);
        assert_eq!(types["month"], DataType::Utf8);
        assert_eq!(types["n"], DataType::Utf8);
        let years = constant_column(Some("2024"), &DataType::Int64, 3);
        assert_eq!(
            years.as_any().downcast_ref::<Int64Array>().unwrap(),
            &Int64Array::from(vec![2024; 3])
        );
        let nulls = constant_column(None, &DataType::Utf8, 2);
        assert_eq!(nulls.null_count(), 2);
    }

    #[test]
    fn the_innermost_directory_of_a_name_wins_and_bad_escapes_stay_as_written() {
        let columns = hive_partitions(Path::new("/lang=en/x/lang=de%ZZ/f.parquet"));
        assert_eq!(find(&columns, "lang"), Some(&column("lang", Some("de%ZZ"))));
        let columns = hive_partitions(Path::new("/lang=%FF/f.parquet"));
        assert_eq!(find(&columns, "lang"), Some(&column("lang", Some("%FF"))));
        assert_eq!(find(&columns, "year"), None);
    }
}
