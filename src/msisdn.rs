//! `Msisdn`: a subscriber's phone number in E.164, parsed once at the edge
//! and never re-validated.
//!
//! ```
//! use keyward::msisdn::{Msisdn, Region};
//! let region = Region::parse("ID").unwrap();
//! for form in ["0812-3456-7890", "62812 3456 7890", "+62 812-3456-7890", "(0812) 3456 7890"] {
//!     assert_eq!(Msisdn::parse(form, region).unwrap().as_str(), "+6281234567890");
//! }
//! ```

use std::fmt;

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;

/// The region national numbers belong to (ISO 3166 alpha-2, e.g. `ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region(Id);

impl Region {
    /// A two-letter region code (upper case) that libphonenumber knows.
    pub fn parse(code: &str) -> Option<Self> {
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return None;
        }
        code.parse::<Id>().ok().map(Self)
    }
}

/// Indonesia, keyward's home.
impl Default for Region {
    fn default() -> Self {
        Self(Id::ID)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msisdn(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsisdnError {
    #[error("the sender is empty")]
    Empty,
    #[error("`{0}` is an alphanumeric sender id, not a phone number")]
    Alphanumeric(String),
    #[error("`{0}` is not a possible phone number")]
    Impossible(String),
}

impl Msisdn {
    /// Parses any common written form: E.164 (`+6281234567890`), with the
    /// country code but no `+` (`6281234567890`), national (`0812-3456-7890`,
    /// `(0812) 3456 7890`) in `region`. Impossible numbers (wrong length for
    /// their country, unknown country code) and alphanumeric sender ids are
    /// refused.
    pub fn parse(raw: &str, region: Region) -> Result<Self, MsisdnError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(MsisdnError::Empty);
        }
        if trimmed.chars().any(char::is_alphabetic) {
            return Err(MsisdnError::Alphanumeric(clip(trimmed)));
        }
        let impossible = || MsisdnError::Impossible(clip(trimmed));
        // Only digits and the usual separators; anything else is not a number.
        if !trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().\u{a0}/".contains(c))
        {
            return Err(impossible());
        }
        // A number written with its country code is that country's,
        // whatever the default region (found by fuzzing: `+51800000`
        // parsed under US but not under RU).
        let region = (!trimmed.starts_with('+')).then_some(region.0);
        let number = phonenumber::parse(region, trimmed).map_err(|_| impossible())?;
        let parsed = Self::possible(&number).ok_or_else(impossible)?;
        if parsed.0 == trimmed {
            return Ok(parsed);
        }
        // The number must read back as itself, or the same subscriber
        // would be two numbers. Some metadata rewrites a national number
        // (found by fuzzing: `+26104000000` gave `+2614000000`, which reads
        // back as `+261204000000`); such a number is refused rather than
        // stored as digits the sender did not write.
        let again = phonenumber::parse(None, &parsed.0)
            .ok()
            .and_then(|n| Self::possible(&n));
        if again.as_ref() == Some(&parsed) {
            Ok(parsed)
        } else {
            Err(impossible())
        }
    }

    /// Parses a number a gateway documents as international, with or without
    /// the leading `+` (Vonage's `msisdn`, Infobip's `from`).
    pub fn parse_international(raw: &str) -> Result<Self, MsisdnError> {
        let trimmed = raw.trim();
        if trimmed.chars().any(char::is_alphabetic) {
            return Err(MsisdnError::Alphanumeric(clip(trimmed)));
        }
        let with_plus = if trimmed.starts_with('+') {
            trimmed.to_owned()
        } else {
            format!("+{trimmed}")
        };
        Self::parse(&with_plus, Region(Id::US)).map_err(|e| match e {
            MsisdnError::Impossible(_) => MsisdnError::Impossible(clip(trimmed)),
            other => other,
        })
    }

    /// Accepts numbers whose length is possible for their country. Validity
    /// (is the range assigned?) is deliberately not required: metadata ages,
    /// and refusing a real subscriber's STOP is worse than storing an odd
    /// number.
    fn possible(number: &phonenumber::PhoneNumber) -> Option<Self> {
        let national = number.national().to_string();
        let code = number.code().value();
        // A number in an unassigned range has no region of its own; judge
        // its length by its country code's main region.
        let meta = number
            .metadata(&DATABASE)
            .or_else(|| DATABASE.by_code(&code).and_then(|m| m.into_iter().next()))?;
        let lengths = meta.descriptors().general().possible_length();
        let ok_length = lengths.is_empty() || lengths.contains(&(national.len() as u16));
        let e164 = format!("+{code}{national}");
        let digits = e164.len() - 1;
        (ok_length && (8..=15).contains(&digits) && !national.starts_with('0'))
            .then_some(Self(e164))
    }

    /// Trusted E.164 text, e.g. read back from the database.
    pub fn from_e164_unchecked(e164: String) -> Self {
        Self(e164)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs: `+62812****7890`.
    pub fn masked(&self) -> crate::telemetry::Masked<'_> {
        crate::telemetry::Masked(&self.0)
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Error messages echo at most a few dozen characters of the input, masked:
/// they reach logs and answers, and the input may be someone's number.
fn clip(s: &str) -> String {
    use crate::telemetry::{clip, Masked, QUOTED_CHARS};
    Masked(clip(s, QUOTED_CHARS)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Region {
        Region::parse("ID").unwrap()
    }

    #[test]
    fn every_common_indonesian_form_gives_the_same_e164() {
        for form in [
            "+6281234567890",
            "6281234567890",
            "081234567890",
            "0812-3456-7890",
            "(0812) 3456 7890",
            "+62 812-3456-7890",
            "  +62 812 3456 7890 ",
        ] {
            assert_eq!(
                Msisdn::parse(form, id()).map(|m| m.0),
                Ok("+6281234567890".to_owned()),
                "{form}"
            );
        }
    }

    #[test]
    fn russian_and_us_numbers_parse_from_international_form() {
        assert_eq!(
            Msisdn::parse("+7 912 345-67-89", id()).unwrap().as_str(),
            "+79123456789"
        );
        assert_eq!(
            Msisdn::parse("+1 (415) 867-5309", id()).unwrap().as_str(),
            "+14158675309"
        );
        assert_eq!(
            Msisdn::parse("8 912 345-67-89", Region::parse("RU").unwrap())
                .unwrap()
                .as_str(),
            "+79123456789"
        );
    }

    #[test]
    fn alphanumeric_senders_and_garbage_are_refused() {
        assert!(matches!(
            Msisdn::parse("TOKOMAJU", id()),
            Err(MsisdnError::Alphanumeric(_))
        ));
        assert_eq!(Msisdn::parse("", id()), Err(MsisdnError::Empty));
        for bad in [
            "12",
            "+999123",
            "0812<script>",
            "+62 812 3456 7890 1234 5678",
            "++62",
        ] {
            assert!(Msisdn::parse(bad, id()).is_err(), "{bad}");
        }
    }

    #[test]
    fn international_without_plus_is_read_as_international() {
        assert_eq!(
            Msisdn::parse_international("447700900123")
                .unwrap()
                .as_str(),
            "+447700900123"
        );
        assert_eq!(
            Msisdn::parse_international("6281234567890")
                .unwrap()
                .as_str(),
            "+6281234567890"
        );
        assert!(Msisdn::parse_international("081234567890").is_err());
    }

    #[test]
    fn errors_do_not_echo_huge_inputs() {
        let huge = "9".repeat(10_000);
        let err = Msisdn::parse(&huge, id()).unwrap_err().to_string();
        assert!(err.len() < 100, "{err}");
    }
}
