//! Logging: JSON lines when stdout is not a terminal (for collectors),
//! readable text when it is. Phone numbers go into logs only through
//! [`Masked`].

use std::fmt;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` overrides the `info` default.
/// Calling it twice is harmless (the second call does nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if std::io::stdout().is_terminal() {
        builder.compact().try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
}

/// For commands whose stdout is their answer (`token create`, `subscriber
/// show`): logs go to stderr, warnings and worse unless `RUST_LOG` says
/// otherwise.
pub fn init_for_commands() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .compact()
        .try_init();
}

/// For tests: readable text through the test harness's capture, so logs
/// show up only for failing tests, every line checked by the
/// [`GuardedTestWriter`]. `RUST_LOG` sets the level (`info`, so that the
/// lines a production service writes are all checked).
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| GuardedTestWriter)
        .try_init();
}

/// At most `max` characters of `s`: what an error message or an audit row
/// may quote of an input (the one clip of the crate).
pub fn clip(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// How many characters of a user's input error messages quote.
pub const QUOTED_CHARS: usize = 32;

/// A phone number as it may appear in logs: `+6281*******90`.
///
/// Digits are what identify a subscriber, so digits are what is counted:
/// at most the first four (country code and operator, useful when
/// debugging routing) and the last two stay, never more than half of them,
/// whatever the length (`+14155550123` → `+141******23`). Separators and
/// the `+` are kept; any other character is starred like a digit.
pub struct Masked<'a>(pub &'a str);

impl Masked<'_> {
    /// Digits (and other characters that are not separators) shown at the
    /// start and the end of a number with `n` of them.
    fn kept(n: usize) -> (usize, usize) {
        let keep = (n / 2).min(6);
        let tail = keep.min(2).min(keep / 2);
        (keep - tail, tail)
    }
}

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = |c: char| matches!(c, '+' | ' ' | '-' | '(' | ')' | '.');
        let n = self.0.chars().filter(|c| !separator(*c)).count();
        let (head, tail) = Self::kept(n);
        let mut seen = 0;
        for c in self.0.chars() {
            if separator(c) {
                f.write_fmt(format_args!("{c}"))?;
                continue;
            }
            seen += 1;
            if seen <= head || seen > n - tail {
                f.write_fmt(format_args!("{c}"))?;
            } else {
                f.write_str("*")?;
            }
        }
        Ok(())
    }
}

/// The runs of ASCII digits in `text`, as byte ranges.
fn digit_runs(text: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        (start < i).then_some(start..i)
    })
}

/// `text` with every run of 8 or more digits (and a `+` before it) masked
/// as a phone number would be: for messages that quote input.
pub fn mask_numbers(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    for run in digit_runs(text).filter(|r| r.len() >= 8) {
        let start = if run.start > 0 && bytes[run.start - 1] == b'+' {
            run.start - 1
        } else {
            run.start
        };
        out.push_str(&text[copied..start]);
        out.push_str(&Masked(&text[start..run.end]).to_string());
        copied = run.end;
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

/// Does `line` hold something that looks like an unmasked phone number: a
/// `+` and 8 or more digits in a row, or 11 to 15 digits in a row that are
/// not part of a longer word (ids such as `SM0123…` are words)? Used by the
/// tests' log guard; timestamps in seconds have 10 digits and pass.
pub fn looks_like_a_number(line: &str) -> bool {
    let bytes = line.as_bytes();
    let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    digit_runs(line).any(|run| {
        let before = run.start.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(run.end).copied();
        // A run after `-` or `.` is part of a token (the last group of a
        // UUID, a fraction), not a number written on its own.
        let joined = matches!(before, Some(b'-' | b'.'));
        (before == Some(b'+') && run.len() >= 8)
            || ((11..=15).contains(&run.len()) && !word(before) && !word(after) && !joined)
    })
}

/// The tests' writer: every line goes to the test harness's capture, and a
/// line that [`looks_like_a_number`] aborts the whole test binary, loudly.
/// Every log line of every test that runs a server is checked, so a raw
/// phone number reaching a log fails the suite wherever it comes from.
pub struct GuardedTestWriter;

impl std::io::Write for GuardedTestWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        if looks_like_a_number(&text) {
            // Straight to the process's stderr: the harness's capture
            // would be lost with the abort.
            let _ = writeln!(
                std::io::stderr(),
                "\nA RAW PHONE NUMBER REACHED A LOG LINE (mask it with Msisdn::masked):\n{text}"
            );
            std::process::abort();
        }
        // Through the harness's capture, like `with_test_writer`.
        print!("{text}");
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{looks_like_a_number, Masked};

    #[test]
    fn an_indonesian_mobile_number_keeps_four_first_and_two_last_digits() {
        assert_eq!(Masked("+6281234567890").to_string(), "+6281*******90");
    }

    #[test]
    fn at_most_four_and_two_digits_stay_whatever_the_length() {
        for (raw, masked) in [
            ("+14155550123", "+141******23"),
            ("+6591234567", "+659*****67"),
            ("+79161234567", "+791******67"),
            ("0812-3456-7890", "0812-****-**90"),
            ("+7912345", "+79****5"),
        ] {
            assert_eq!(Masked(raw).to_string(), masked, "{raw}");
        }
        for len in 0..40 {
            let raw = "9".repeat(len);
            let shown = Masked(&raw).to_string().matches('9').count();
            assert!(shown <= 6 && shown <= len / 2, "{len}: {shown}");
        }
    }

    #[test]
    fn short_and_odd_inputs_are_masked_without_panicking() {
        assert_eq!(Masked("").to_string(), "");
        assert_eq!(Masked("1234").to_string(), "1**4");
        assert_eq!(Masked("ТЕЛЕФОН-НОМЕР").to_string(), "ТЕЛЕ***-***ЕР");
    }

    #[test]
    fn numbers_quoted_in_messages_are_masked() {
        assert_eq!(
            super::mask_numbers("invalid type: integer `6281234567890`, expected a string"),
            "invalid type: integer `6281*******90`, expected a string"
        );
        assert_eq!(
            super::mask_numbers("from +6281234567890!"),
            "from +6281*******90!"
        );
        assert_eq!(
            super::mask_numbers("line 12, column 7"),
            "line 12, column 7"
        );
    }

    #[test]
    fn the_log_guard_knows_a_number_from_an_id_or_a_timestamp() {
        for line in [
            "msisdn=+6281234567890 flooding",
            "`6281234567890` is not a possible phone number",
            "from 081234567890,",
        ] {
            assert!(looks_like_a_number(line), "{line}");
        }
        for line in [
            "msisdn=+6281*******90",
            "timestamp=1795428000",
            "id=SM0123456789abcdef0123456789abcdef",
            "took 0.000123456789 s",
            "owner=host-1234-deadbeef",
            "outbox_id=8d979036-e398-4bed-8281-110000000000",
        ] {
            assert!(!looks_like_a_number(line), "{line}");
        }
    }
}
