//! A size in bytes, written as a number of bytes or with a unit ("500MB", "4 GiB").

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A number of bytes, read from an integer or a string with a decimal (kB, MB, GB, TB) or
/// binary (KiB, MiB, GiB, TiB) unit; written back as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Reads `"512MiB"`, `"4 GB"`, `"1.5GiB"` or `"1000"` (case-insensitive units).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size (a number and a unit such as 4GiB)"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            other => {
                return Err(format!(
                "unknown unit `{other}` in `{text}` (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ))
            }
        };
        Ok(ByteSize((value * scale as f64).round() as u64))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of bytes or a size such as \"4GiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_decimal_and_binary_units() {
        for (text, bytes) in [
            ("1000", 1000),
            ("500MB", 500_000_000),
            ("4 GiB", 4 << 30),
            ("1.5gib", 3 << 29),
            ("64KiB", 65_536),
            ("2tb", 2_000_000_000_000),
        ] {
            assert_eq!(ByteSize::parse(text), Ok(ByteSize(bytes)), "{text}");
        }
        assert!(ByteSize::parse("4 parsecs")
            .unwrap_err()
            .contains("unknown unit `parsecs`"));
        assert!(ByteSize::parse("GiB").unwrap_err().contains("not a size"));
    }
}
