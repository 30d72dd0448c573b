//! Support staff: API tokens and roles, and the pure pieces of the support
//! API (cursors, query parsing). The HTTP side is in `routes::support` and
//! `routes::console`, the SQL in `db::support`.
//!
//! A token is `kw_` and 32 random bytes in base64url, shown once; only its
//! SHA-256 is stored, so a lookup by hash is the comparison (no timing
//! leak from comparing secrets byte by byte) and a stolen database gives
//! no usable token.
//!
//! ```
//! use keyward::staff::{hash_token, new_token, Role};
//! let token = new_token();
//! assert!(token.starts_with("kw_") && token.len() == 46);
//! assert_eq!(hash_token(&token).len(), 32);
//! assert!(Role::Admin.covers(Role::Support) && !Role::Support.covers(Role::Admin));
//! ```

pub mod view;

use std::str::FromStr;

use base64::Engine;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::telemetry::{clip, QUOTED_CHARS};

/// What a token may do. `support` reads numbers and records staff
/// opt-outs; `marketing` creates and controls broadcasts (and reads them,
/// nothing else); `admin` may do both and manage tokens.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Support,
    Marketing,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Support, Role::Marketing, Role::Admin];

    /// Does this role include everything `needed` may do? Admin covers
    /// every role; support and marketing only themselves.
    pub fn covers(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "support" => Ok(Role::Support),
            "marketing" => Ok(Role::Marketing),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "`{}` is not a role (support, marketing or admin)",
                clip(other, QUOTED_CHARS)
            )),
        }
    }
}

crate::labels!(Role { Support => "support", Marketing => "marketing", Admin => "admin" });

/// The staff member behind a request: who they are (the token's name is
/// the actor in the ledger and the audit log) and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
}

/// A token's name: what the ledger and the audit log call its holder, and
/// what `DELETE /v1/tokens/{name}` names, so it is kept URL- and
/// log-friendly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = (1..=100).contains(&raw.len())
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "`{}` is not a token name: 1 to 100 of A-Z a-z 0-9 . _ @ -",
                clip(raw, QUOTED_CHARS)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new secret token: 32 bytes from `rand`'s thread generator, a CSPRNG
/// (ChaCha12) seeded from the operating system.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "kw_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// What is stored of a token (or of a console session id).
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Could this be a token [`new_token`] made? (`kw_` and 43 base64url
/// characters.) Anything else is refused without a database lookup.
pub fn plausible_token(token: &str) -> bool {
    token.len() == 46
        && token.starts_with("kw_")
        && token[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Position in a number's timeline (newest first): the time, the kind's
/// rank (a reply after the state change after the message, when one
/// transaction wrote all three) and a tie-breaking key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineCursor {
    pub at: DateTime<Utc>,
    pub rank: i32,
    pub key: String,
}

impl TimelineCursor {
    pub fn encode(&self) -> String {
        format!("{}_{}_{}", self.at.timestamp_micros(), self.rank, self.key)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(3, '_');
        let micros: i64 = parts.next()?.parse().ok()?;
        let rank: i32 = parts.next()?.parse().ok()?;
        let key = parts.next()?;
        let key_ok =
            (1..=40).contains(&key.len()) && key.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if !(0..=2).contains(&rank) || !key_ok {
            return None;
        }
        let at = Utc.timestamp_micros(micros).single()?;
        Some(Self {
            at,
            rank,
            key: key.to_owned(),
        })
    }
}

/// A page size from the query string: `default` when absent, at most `max`.
pub fn page_limit(raw: Option<u32>, default: u32, max: u32) -> Result<i64, String> {
    match raw {
        None => Ok(i64::from(default)),
        Some(0) => Err("limit must be at least 1".into()),
        Some(n) if n > max => Err(format!("limit must be at most {max}")),
        Some(n) => Ok(i64::from(n)),
    }
}

/// A program name as the schema allows it.
pub fn program_name(raw: &str) -> Result<String, String> {
    crate::core::ProgramName::parse(raw).map(crate::core::ProgramName::into_string)
}

/// `since` of the consent export: an RFC 3339 time or a date (midnight UTC).
pub fn parse_since(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!(
                "`{}` is not a date (2026-11-01) or an RFC 3339 time",
                clip(raw, QUOTED_CHARS)
            )
        })
}

/// The list cursor: the last number of the previous page, in E.164.
pub fn list_cursor(raw: &str) -> Result<String, String> {
    let ok = raw.len() <= 16
        && raw.starts_with('+')
        && raw.len() > 1
        && raw[1..].chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(raw.to_owned())
    } else {
        Err("the cursor is not one this API gave out".into())
    }
}

/// A CSV cell that a spreadsheet will show as text, never run as a formula
/// (OWASP's advice for CSV injection): a cell starting with `=`, `+`, `-`,
/// `@`, tab or carriage return gets a leading `'`. A sign followed only by
/// digits (an E.164 number, a negative count) is a number to a spreadsheet,
/// not a formula, and is left as it is so numbers stay machine-readable.
///
/// ```
/// use keyward::staff::spreadsheet_safe;
/// assert_eq!(spreadsheet_safe("=HYPERLINK(\"http://x\")"), "'=HYPERLINK(\"http://x\")");
/// assert_eq!(spreadsheet_safe("@STOP"), "'@STOP");
/// assert_eq!(spreadsheet_safe("+6281234567890"), "+6281234567890");
/// assert_eq!(spreadsheet_safe("STOP"), "STOP");
/// ```
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let mut chars = cell.chars();
    let risky = match chars.next() {
        Some('=' | '@' | '\t' | '\r') => true,
        Some('+' | '-') => {
            let rest = chars.as_str();
            rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    };
    if risky {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_numbers_kept() {
        for risky in [
            "=1+1",
            "+1+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(A1)",
            "\tSTOP",
            "\r=1",
            "+",
            "-",
        ] {
            assert_eq!(spreadsheet_safe(risky), format!("'{risky}"), "{risky:?}");
        }
        for plain in ["+6281234567890", "-12", "STOP", "", "'quoted", "a=b"] {
            assert_eq!(spreadsheet_safe(plain), plain, "{plain:?}");
        }
    }

    #[test]
    fn tokens_are_random_prefixed_and_hash_to_32_bytes() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with("kw_"));
        assert_ne!(hash_token(&a), hash_token(&b));
        assert_eq!(hash_token(&a), hash_token(&a.clone()));
        assert!(plausible_token(&a) && plausible_token(&b));
        for bogus in [
            "",
            "kw_",
            "Bearer",
            &a[..45],
            &format!("{a}x"),
            &a.replace("kw_", "kx_"),
        ] {
            assert!(!plausible_token(bogus), "{bogus:?}");
        }
    }

    #[test]
    fn admin_covers_support_but_not_the_reverse() {
        assert!(Role::Admin.covers(Role::Admin));
        assert!(Role::Admin.covers(Role::Support));
        assert!(Role::Support.covers(Role::Support));
        assert!(!Role::Support.covers(Role::Admin));
        assert_eq!("admin".parse(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn bearer_headers_are_read_case_insensitively_and_others_refused() {
        assert_eq!(bearer("Bearer kw_abc"), Some("kw_abc"));
        assert_eq!(bearer("bearer  kw_abc "), Some("kw_abc"));
        assert_eq!(bearer("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("kw_abc"), None);
    }

    #[test]
    fn token_names_are_plain_words() {
        assert!(TokenName::parse("ana.support@example.com").is_ok());
        for bad in ["", "a b", "ana/../x", "<script>", &"x".repeat(101)] {
            assert!(TokenName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeline_cursors_round_trip_and_garbage_is_refused() {
        let c = TimelineCursor {
            at: Utc.timestamp_micros(1_795_000_000_123_456).unwrap(),
            rank: 2,
            key: "0b0c7e0e-3c7a-4d0e-9a1b-2f3a4b5c6d7e".into(),
        };
        assert_eq!(TimelineCursor::decode(&c.encode()), Some(c));
        for bad in [
            "",
            "x_1_2",
            "1_7_00000000000000000001",
            "1_1_'; DROP",
            "1_1_",
        ] {
            assert_eq!(TimelineCursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn page_limits_default_and_cap() {
        assert_eq!(page_limit(None, 50, 200), Ok(50));
        assert_eq!(page_limit(Some(10), 50, 200), Ok(10));
        assert!(page_limit(Some(0), 50, 200).is_err());
        assert!(page_limit(Some(201), 50, 200).is_err());
    }

    #[test]
    fn since_takes_a_date_or_a_time() {
        assert_eq!(
            parse_since("2026-11-01").unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-11-01T07:00:00+07:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn program_names_and_list_cursors_follow_the_schema() {
        assert!(program_name("promo-2").is_ok());
        assert!(program_name("Promo").is_err());
        assert!(program_name("").is_err());
        assert!(list_cursor("+6281234567890").is_ok());
        assert!(list_cursor("6281234567890").is_err());
        assert!(list_cursor("+62abc").is_err());
    }
}
