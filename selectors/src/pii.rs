//! Email and IP address redaction, as datatrove's `PIIFormatter` does it: every email
//! address and every globally reachable IPv4 address in a text is replaced by a placeholder
//! from a list, taken in turn. The patterns are datatrove's (an RFC 5322-style address;
//! four dotted octets of 0-255). An IP-shaped match that is not a valid address (an octet
//! with a leading zero) or that is not globally reachable (private, loopback, link-local,
//! shared, documentation and reserved ranges, as Python 3.11's `ipaddress.is_global`
//! decides) is left as written.
//!
//! One difference: the placeholders are taken in turn within each document, starting at the
//! first for every document. datatrove's turn runs on across the documents of a worker, so
//! its output depends on how the corpus is split among workers; here a document's text
//! depends on that document alone.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::LazyLock;

/// The settings of email and IP redaction (defaults: datatrove's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PiiRedaction {
    /// Replace email addresses.
    pub emails: bool,
    /// Replace IPv4 addresses.
    pub ips: bool,
    /// Replace only globally reachable IPv4 addresses (private ones are not personal data).
    pub only_public_ips: bool,
    /// Placeholders for email addresses, used in turn within a document.
    pub email_replacements: Vec<String>,
    /// Placeholders for IP addresses, used in turn within a document.
    pub ip_replacements: Vec<String>,
}

impl Default for PiiRedaction {
    fn default() -> Self {
        PiiRedaction {
            emails: true,
            ips: true,
            only_public_ips: true,
            // example.com and example.org are reserved for examples (RFC 2606).
            email_replacements: vec![
                "email@example.com".into(),
                "firstname.lastname@example.org".into(),
            ],
            // datatrove's list: addresses that did not answer pings when it was made.
            ip_replacements: [
                "22.214.171.124",
                "126.96.36.199",
                "188.8.131.52",
                "184.108.40.206",
                "220.127.116.11",
                "18.104.22.168",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// An email address: local part, `@`, and a dotted domain or a bracketed address literal.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@",
        r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?",
        r"|\[(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}",
        r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|[A-Za-z0-9-]*[A-Za-z0-9]:)\])",
    ))
    .expect("the email pattern compiles")
});

/// Four dotted octets of 0-255 (leading zeros allowed by the pattern, refused after).
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)",
    )
    .expect("the IPv4 pattern compiles")
});

/// The IPv4 networks that are not globally reachable (Python 3.11's `is_private` list and
/// the shared address space 100.64.0.0/10), as (address, prefix length).
const NOT_GLOBAL: [([u8; 4], u32); 15] = [
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 29),
    ([192, 0, 0, 170], 31),
    ([192, 0, 2, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([240, 0, 0, 0], 4),
    ([255, 255, 255, 255], 32),
];

/// The address `text` writes, when it is four decimal octets without leading zeros.
fn parse_ipv4(text: &str) -> Option<u32> {
    let mut address = 0u32;
    let mut octets = 0;
    for octet in text.split('.') {
        let valid = !octet.is_empty()
            && octet.len() <= 3
            && octet.bytes().all(|b| b.is_ascii_digit())
            && !(octet.len() > 1 && octet.starts_with('0'));
        let value: u32 = octet.parse().ok().filter(|v| valid && *v <= 255)?;
        address = address << 8 | value;
        octets += 1;
    }
    (octets == 4).then_some(address)
}

/// Whether `address` lies outside every network of [`NOT_GLOBAL`].
fn is_global(address: u32) -> bool {
    NOT_GLOBAL.iter().all(|(network, prefix)| {
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        address & mask != u32::from_be_bytes(*network) & mask
    })
}

impl PiiRedaction {
    /// Whether an IP-shaped match is replaced.
    fn replaces_ip(&self, matched: &str) -> bool {
        parse_ipv4(matched).is_some_and(|a| !self.only_public_ips || is_global(a))
    }

    /// `text` with its email addresses, then its IP addresses, replaced, and how many of
    /// each were replaced.
    pub fn redact<'a>(&self, text: &'a str) -> (Cow<'a, str>, Counts) {
        let mut counts = Counts::default();
        let mut text = Cow::Borrowed(text);
        if self.emails && !self.email_replacements.is_empty() && text.contains('@') {
            let replaced = EMAIL.replace_all(&text, |_: &regex::Captures| {
                let turn = counts.emails as usize % self.email_replacements.len();
                counts.emails += 1;
                &self.email_replacements[turn]
            });
            if let Cow::Owned(t) = replaced {
                text = Cow::Owned(t);
            }
        }
        if self.ips && !self.ip_replacements.is_empty() && text.contains('.') {
            let replaced = IPV4.replace_all(&text, |c: &regex::Captures| {
                let matched = &c[0];
                if !self.replaces_ip(matched) {
                    return matched.to_string();
                }
                let turn = counts.ips as usize % self.ip_replacements.len();
                counts.ips += 1;
                self.ip_replacements[turn].clone()
            });
            if counts.ips > 0 {
                text = Cow::Owned(replaced.into_owned());
            }
        }
        (text, counts)
    }
}

/// What [`PiiRedaction::redact`] replaced in one text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Email addresses replaced.
    pub emails: u64,
    /// IP addresses replaced.
    pub ips: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: &str) -> String {
        PiiRedaction::default().redact(text).0.into_owned()
    }

    #[test]
    fn emails_are_replaced_in_turn_within_each_document() {
        assert_eq!(
            redact("write to ann.lee+list@mail.uni-x.edu or bob@ex.io, cc carl@ex.io."),
            "write to email@example.com or firstname.lastname@example.org, cc email@example.com."
        );
        // A new document starts with the first placeholder again.
        assert_eq!(redact("me: x@y.org"), "me: email@example.com");
        // An address literal in brackets is an address; a bare `@` or a dotless domain is not.
        assert_eq!(
            redact("a@[10.0.0.1] b@c @home d@localhost"),
            "email@example.com b@c @home d@localhost"
        );
    }

    #[test]
    fn only_valid_globally_reachable_ipv4_addresses_are_replaced() {
        // Each address with what Python 3.11's `ipaddress.ip_address(a).is_global` says.
        for (address, global) in [
            ("8.8.8.8", true),
            ("172.32.0.1", true),
            ("224.0.0.1", true),
            ("192.0.0.7", false),
            ("192.0.0.8", true),
            ("192.0.0.9", true),
            ("192.0.0.170", false),
            ("192.0.0.172", true),
            ("100.64.0.1", false),
            ("100.128.0.1", true),
            ("172.31.255.255", false),
            ("10.1.2.3", false),
            ("127.0.0.1", false),
            ("169.254.1.1", false),
            ("198.19.255.255", false),
            ("198.20.0.0", true),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            ("0.0.0.0", false),
        ] {
            let want = if global { "22.214.171.124" } else { address };
            assert_eq!(
                redact(&format!("host {address} up")),
                format!("host {want} up"),
                "{address}"
            );
        }
        // Leading zeros make the match no address (Python refuses them); the pattern takes
        // the leftmost match, also inside a longer number.
        assert_eq!(redact("01.2.3.4 and 1.2.3.04"), "01.2.3.4 and 1.2.3.04");
        // (The expected texts here are what datatrove 0.10's PIIFormatter returns.)
        assert_eq!(redact("1234.5.6.7"), "122.214.171.124");
        assert_eq!(redact("999.8.8.8.8"), "922.214.171.124.8");
        assert_eq!(redact("1.2.3.4.5.6.7.8"), "22.214.171.124.126.96.36.199");
        let all = PiiRedaction {
            only_public_ips: false,
            ..PiiRedaction::default()
        };
        assert_eq!(
            all.redact("10.0.0.1 8.8.8.8").0,
            "22.214.171.124 126.96.36.199"
        );
    }

    #[test]
    fn counts_and_untouched_texts() {
        let (text, counts) = PiiRedaction::default().redact("a@b.cc 8.8.4.4 8.8.8.8 10.0.0.1");
        assert_eq!(
            text,
            "email@example.com 22.214.171.124 126.96.36.199 10.0.0.1"
        );
        assert_eq!(counts, Counts { emails: 1, ips: 2 });
        let (text, counts) = PiiRedaction::default().redact("nothing 10.0.0.1 here");
        assert!(matches!(text, Cow::Borrowed(_)));
        assert_eq!(counts, Counts::default());
        let off = PiiRedaction {
            emails: false,
            ips: false,
            ..PiiRedaction::default()
        };
        assert_eq!(off.redact("a@b.cc 8.8.8.8").0, "a@b.cc 8.8.8.8");
    }
}
