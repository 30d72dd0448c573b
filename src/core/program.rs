//! A program's name, parsed once: what the configuration, the support API
//! and the schema's `program_name` domain all accept.

use std::fmt;

/// `^[a-z0-9][a-z0-9_-]{0,63}$`, as `sql/V5__domains.sql` checks it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProgramName(String);

impl ProgramName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut chars = raw.chars();
        let ok = raw.len() <= 64
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            // Quoted short: the raw value may be anything a client sent.
            let shown: String = raw.chars().take(40).collect();
            Err(format!(
                "`{}` is not a program name (lowercase letters, digits, `-` or `_`, at most 64)",
                shown.escape_debug()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ProgramName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_schema() {
        for ok in ["promo", "promo_2-b", "2026", &"a".repeat(64)] {
            assert_eq!(ProgramName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "Promo",
            "-promo",
            "_x",
            "pro mo",
            "promo!",
            &"a".repeat(65),
            "промо",
        ] {
            assert!(ProgramName::parse(bad).is_err(), "{bad}");
        }
    }
}
