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
/// show up only for failing tests. `RUST_LOG` sets the level (`warn`).
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A phone number as it may appear in logs: `+62812****7890`.
///
/// Keeps the country code and operator prefix (useful when debugging
/// routing) and the last four digits (what a subscriber quotes on the
/// phone); everything between is starred.
pub struct Masked<'a>(pub &'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars: Vec<char> = self.0.chars().collect();
        let (head, tail) = match chars.len() {
            n if n > 10 => (6, 4),
            n if n > 4 => (2, 2),
            _ => (0, 0),
        };
        let hidden = chars.len() - head - tail;
        for c in &chars[..head] {
            f.write_fmt(format_args!("{c}"))?;
        }
        for _ in 0..hidden {
            f.write_str("*")?;
        }
        for c in &chars[chars.len() - tail..] {
            f.write_fmt(format_args!("{c}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Masked;

    #[test]
    fn an_indonesian_mobile_number_keeps_prefix_and_last_four_digits() {
        assert_eq!(Masked("+6281234567890").to_string(), "+62812****7890");
    }

    #[test]
    fn short_and_odd_inputs_are_masked_without_panicking() {
        assert_eq!(Masked("").to_string(), "");
        assert_eq!(Masked("1234").to_string(), "****");
        assert_eq!(Masked("+7912345").to_string(), "+7****45");
        assert_eq!(Masked("ТЕЛЕФОН-НОМЕР").to_string(), "ТЕЛЕФО***ОМЕР");
    }
}
