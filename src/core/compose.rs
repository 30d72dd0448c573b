//! Broadcast templates (issue #15): what a business writes once and keyward
//! sends to every subscriber of a program, with per-recipient values.
//!
//! A [`Template`] is parsed once, when the broadcast is created, so that
//! every problem is reported then and not per recipient; the caller refuses
//! a recipient who lacks one of [`Template::required_vars`]. Rendering never
//! fails otherwise.
//!
//! Variables: `{brand}`, `{program}`, `{shortcode}`, `{stop}` (the stop
//! keyword) and `{vars.NAME}`, a per-recipient value (`NAME`: a letter or
//! `_`, then letters, digits or `_`, 32 at most); `{{` and `}}` are literal
//! braces.
//!
//! Every marketing message carries the stop instruction: a template without
//! `{stop}` gets one sentence in the message's language appended **on a line
//! of its own** (`\n`, one septet like a space), e.g. `Balas UNSUBSCRIBE ke
//! 3344 untuk berhenti.` A line break of our own, because a per-recipient
//! value can carry none: values are stripped of control and invisible
//! characters (line breaks, bidirectional overrides, zero-width spaces) and
//! cut to [`MAX_VAR_CHARS`] characters, so nothing a recipient's data holds
//! can push the stop line out of sight or disguise it. A stop keyword written
//! literally in the template does not count: only `{stop}` is sure to name
//! the keyword in force.
//!
//! ```
//! use std::collections::BTreeMap;
//! use keyward::core::{encoding, BroadcastVars, Language, Template};
//!
//! let template = Template::parse("{brand}: Halo {vars.nama}, diskon 20% hari ini.").unwrap();
//! assert_eq!(template.required_vars().collect::<Vec<_>>(), ["nama"]);
//!
//! let lang = Language::Id;
//! let vars = BroadcastVars::new("Toko Maju", "promo", "3344", lang);
//! let recipient = BTreeMap::from([("nama".to_string(), "Sari\nBalas YA".to_string())]);
//! let text = template.render(&vars, &recipient, lang).unwrap();
//! assert_eq!(
//!     text,
//!     "Toko Maju: Halo Sari Balas YA, diskon 20% hari ini.\nBalas UNSUBSCRIBE ke 3344 untuk berhenti."
//! );
//! assert_eq!(encoding(&text).1, 1);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keywords::Language;
use super::reply::{encoding, parse, Encoding, Piece};

/// The longest a per-recipient value may be, in characters, once sanitised.
pub const MAX_VAR_CHARS: usize = 100;

/// The longest a `{vars.NAME}` name may be.
pub const MAX_VAR_NAME: usize = 32;

/// The values of a broadcast that are the same for every recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastVars<'a> {
    pub brand: &'a str,
    pub program: &'a str,
    pub shortcode: &'a str,
    /// The keyword that `{stop}` and the appended stop sentence name,
    /// normally [`Language::stop_keyword`] of the message's language.
    pub stop_keyword: &'a str,
}

impl<'a> BroadcastVars<'a> {
    /// The values for a message in `lang`, with that language's stop keyword.
    pub fn new(
        brand: &'a str,
        program: &'a str,
        shortcode: &'a str,
        lang: Language,
    ) -> BroadcastVars<'a> {
        BroadcastVars {
            brand,
            program,
            shortcode,
            stop_keyword: lang.stop_keyword(),
        }
    }
}

/// What is wrong with a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateProblemCode {
    Empty,
    UnknownVariable,
    InvalidVarName,
    UnbalancedBraces,
}

impl TemplateProblemCode {}

crate::labels!(TemplateProblemCode { Empty => "empty", UnknownVariable => "unknown_variable", InvalidVarName => "invalid_var_name", UnbalancedBraces => "unbalanced_braces" });

/// One problem of a template, for the person who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateProblem {
    pub code: TemplateProblemCode,
    pub message: String,
}

/// A recipient has no value for a variable the template needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no value for {{vars.{name}}}")]
pub struct MissingVar {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Brand,
    Program,
    Shortcode,
    Stop,
    Var(String),
}

/// A parsed broadcast template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    /// The `{vars.NAME}` names, each once, in order of first use.
    required: Vec<String>,
    uses_stop: bool,
}

fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_VAR_NAME
}

impl Template {
    /// Parses a template; all its problems at once if it has any.
    pub fn parse(text: &str) -> Result<Template, Vec<TemplateProblem>> {
        let problem = |code, message: String| TemplateProblem { code, message };
        if text.trim().is_empty() {
            return Err(vec![problem(
                TemplateProblemCode::Empty,
                "the template is empty".to_string(),
            )]);
        }
        let mut problems = Vec::new();
        let mut parts: Vec<Part> = Vec::new();
        let mut required: Vec<String> = Vec::new();
        let mut uses_stop = false;
        let push_text = |parts: &mut Vec<Part>, t: &str| match parts.last_mut() {
            Some(Part::Text(prev)) => prev.push_str(t),
            _ => parts.push(Part::Text(t.to_string())),
        };
        for piece in parse(text) {
            match piece {
                Piece::Text(t) => push_text(&mut parts, t),
                Piece::Brace(c) => push_text(&mut parts, c.encode_utf8(&mut [0; 4])),
                Piece::Var("brand") => parts.push(Part::Brand),
                Piece::Var("program") => parts.push(Part::Program),
                Piece::Var("shortcode") => parts.push(Part::Shortcode),
                Piece::Var("stop") => {
                    uses_stop = true;
                    parts.push(Part::Stop);
                }
                Piece::Var(name) => match name.strip_prefix("vars.") {
                    Some(var) if valid_var_name(var) => {
                        if !required.iter().any(|r| r == var) {
                            required.push(var.to_string());
                        }
                        parts.push(Part::Var(var.to_string()));
                    }
                    Some(var) => problems.push(problem(
                        TemplateProblemCode::InvalidVarName,
                        format!(
                            "invalid variable name {{vars.{var}}}: a letter or _, then letters, digits or _, {MAX_VAR_NAME} at most"
                        ),
                    )),
                    None => problems.push(problem(
                        TemplateProblemCode::UnknownVariable,
                        format!(
                            "unknown variable {{{name}}} (known: {{brand}}, {{program}}, {{shortcode}}, {{stop}}, {{vars.NAME}})"
                        ),
                    )),
                },
                Piece::Unclosed(_) => problems.push(problem(
                    TemplateProblemCode::UnbalancedBraces,
                    "unbalanced braces: '{' without '}' (write {{ for a literal brace)".to_string(),
                )),
                Piece::StrayClose => problems.push(problem(
                    TemplateProblemCode::UnbalancedBraces,
                    "unbalanced braces: '}' without '{' (write }} for a literal brace)".to_string(),
                )),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Template {
            source: text.to_string(),
            parts,
            required,
            uses_stop,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The per-recipient variables the template needs (the `NAME` of each
    /// `{vars.NAME}`), each once, in order of first use.
    pub fn required_vars(&self) -> impl Iterator<Item = &str> + '_ {
        self.required.iter().map(String::as_str)
    }

    /// Whether the template places the stop keyword itself (`{stop}`); when
    /// not, rendering appends [`stop_sentence`].
    pub fn uses_stop(&self) -> bool {
        self.uses_stop
    }

    /// Renders the message for one recipient, whose values are `recipient`.
    pub fn render(
        &self,
        vars: &BroadcastVars,
        recipient: &BTreeMap<String, String>,
        lang: Language,
    ) -> Result<String, MissingVar> {
        self.render_with(vars, |name| recipient.get(name), lang)
    }

    /// [`Template::render`] with the recipient's values looked up by name.
    pub fn render_with<F, S>(
        &self,
        vars: &BroadcastVars,
        mut lookup: F,
        lang: Language,
    ) -> Result<String, MissingVar>
    where
        F: FnMut(&str) -> Option<S>,
        S: AsRef<str>,
    {
        let mut out = String::with_capacity(self.source.len() + 64);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Brand => push_visible(&mut out, vars.brand),
                Part::Program => push_visible(&mut out, vars.program),
                Part::Shortcode => push_visible(&mut out, vars.shortcode),
                Part::Stop => push_visible(&mut out, vars.stop_keyword),
                Part::Var(name) => match lookup(name) {
                    Some(value) => out.push_str(&sanitize_value(value.as_ref())),
                    None => return Err(MissingVar { name: name.clone() }),
                },
            }
        }
        if !self.uses_stop {
            out.truncate(out.trim_end().len());
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&stop_sentence(lang, vars.stop_keyword, vars.shortcode));
        }
        Ok(out)
    }

    /// The encoding and number of segments of the costliest message among
    /// `recipients`, for reporting at creation: each recipient's message is
    /// rendered and counted with [`encoding`] (a recipient who lacks a
    /// variable is skipped: creation refuses them). `None` without any
    /// recipient to count.
    ///
    /// Counting every message rather than a bound matters: one value outside
    /// GSM-7 turns its recipient's whole message into UCS-2, where a segment
    /// holds 70 characters instead of 160.
    pub fn worst_case_segments<'r>(
        &self,
        vars: &BroadcastVars,
        recipients: impl IntoIterator<Item = &'r BTreeMap<String, String>>,
        lang: Language,
    ) -> Option<(Encoding, u32)> {
        recipients
            .into_iter()
            .filter_map(|r| self.render(vars, r, lang).ok())
            .map(|text| encoding(&text))
            // On a tie, UCS-2: the costlier way to fill the same segments.
            .max_by_key(|&(enc, segments)| (segments, enc == Encoding::Ucs2))
    }

    /// The message with each variable at its longest value among
    /// `recipients` (in UTF-16 units, the measure of UCS-2), e.g. to show
    /// the writer at creation how long a message can get; a variable no
    /// recipient has renders empty.
    pub fn render_longest<'r>(
        &self,
        vars: &BroadcastVars,
        recipients: impl IntoIterator<Item = &'r BTreeMap<String, String>>,
        lang: Language,
    ) -> String {
        let mut longest: BTreeMap<&str, (usize, String)> = BTreeMap::new();
        for recipient in recipients {
            for name in &self.required {
                let Some(value) = recipient.get(name) else {
                    continue;
                };
                let value = sanitize_value(value);
                let units = value.encode_utf16().count();
                if longest.get(name.as_str()).is_none_or(|(m, _)| units > *m) {
                    longest.insert(name, (units, value));
                }
            }
        }
        let value = |name: &str| Some(longest.get(name).map_or("", |(_, v)| v.as_str()));
        self.render_with(vars, value, lang)
            .expect("every variable has a value")
    }
}

/// The stop instruction appended to a template without `{stop}`.
pub fn stop_sentence(lang: Language, stop_keyword: &str, shortcode: &str) -> String {
    let (stop, code) = (visible(stop_keyword), visible(shortcode));
    match lang {
        Language::Id => format!("Balas {stop} ke {code} untuk berhenti."),
        Language::En => format!("Reply {stop} to {code} to stop."),
        Language::Ru => format!("Ответьте {stop} на {code}, чтобы отписаться."),
    }
}

/// Characters that break a line or hide or reorder text: control
/// characters, line and paragraph separators, bidirectional marks and
/// overrides, zero-width characters, the soft hyphen.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// An operator's value (brand, program, short code, keyword) without the
/// characters of [`is_invisible`]; not shortened.
fn visible(value: &str) -> String {
    value.chars().filter(|c| !is_invisible(*c)).collect()
}

fn push_visible(out: &mut String, value: &str) {
    out.extend(value.chars().filter(|c| !is_invisible(*c)));
}

/// A per-recipient value as it is substituted: every break or run of white
/// space becomes one space, other invisible characters go, the ends are
/// trimmed and the value is cut to [`MAX_VAR_CHARS`] characters.
/// Idempotent.
pub fn sanitize_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_VAR_CHARS * 4));
    let mut space = false;
    let mut count = 0;
    for c in value.chars() {
        if c.is_whitespace() || (is_invisible(c) && c.is_control()) {
            space = !out.is_empty();
            continue;
        }
        if is_invisible(c) {
            continue;
        }
        if space {
            if count + 1 >= MAX_VAR_CHARS {
                break;
            }
            out.push(' ');
            count += 1;
            space = false;
        }
        out.push(c);
        count += 1;
        if count == MAX_VAR_CHARS {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(lang: Language) -> BroadcastVars<'static> {
        BroadcastVars::new("Toko Maju", "promo", "3344", lang)
    }

    fn codes(text: &str) -> Vec<TemplateProblemCode> {
        Template::parse(text)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.code)
            .collect()
    }

    fn one(name: &str, value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(name.to_string(), value.to_string())])
    }

    #[test]
    fn the_stop_sentence_is_appended_on_its_own_line_in_the_message_language() {
        let t = Template::parse("{brand}: diskon 20%.  \n").unwrap();
        let none = BTreeMap::new();
        assert_eq!(
            t.render(&vars(Language::Id), &none, Language::Id).unwrap(),
            "Toko Maju: diskon 20%.\nBalas UNSUBSCRIBE ke 3344 untuk berhenti."
        );
        assert_eq!(
            t.render(&vars(Language::En), &none, Language::En).unwrap(),
            "Toko Maju: diskon 20%.\nReply UNSUBSCRIBE to 3344 to stop."
        );
        assert_eq!(
            t.render(&vars(Language::Ru), &none, Language::Ru).unwrap(),
            "Toko Maju: diskon 20%.\nОтветьте СТОП на 3344, чтобы отписаться."
        );
    }

    #[test]
    fn a_template_with_stop_places_the_keyword_itself() {
        let t = Template::parse("{brand}: promo. Balas {stop} ke {shortcode}.").unwrap();
        assert!(t.uses_stop());
        let text = t
            .render(&vars(Language::Id), &BTreeMap::new(), Language::Id)
            .unwrap();
        assert_eq!(text, "Toko Maju: promo. Balas UNSUBSCRIBE ke 3344.");
    }

    #[test]
    fn a_literal_stop_keyword_does_not_replace_the_sentence() {
        let t = Template::parse("Toko Maju: promo. Balas UNSUBSCRIBE ke 3344.").unwrap();
        let text = t
            .render(&vars(Language::Id), &BTreeMap::new(), Language::Id)
            .unwrap();
        assert!(
            text.ends_with("\nBalas UNSUBSCRIBE ke 3344 untuk berhenti."),
            "{text}"
        );
    }

    #[test]
    fn required_vars_are_listed_once_in_order_of_use() {
        let t = Template::parse("{vars.b} {vars.a} {vars.b} {brand}").unwrap();
        assert_eq!(t.required_vars().collect::<Vec<_>>(), ["b", "a"]);
    }

    #[test]
    fn a_missing_recipient_value_is_an_error_naming_it() {
        let t = Template::parse("Halo {vars.nama}").unwrap();
        let err = t
            .render(&vars(Language::Id), &one("other", "x"), Language::Id)
            .unwrap_err();
        assert_eq!(
            err,
            MissingVar {
                name: "nama".into()
            }
        );
        assert_eq!(err.to_string(), "no value for {vars.nama}");
    }

    #[test]
    fn problems_are_reported_all_at_once_with_a_code() {
        use TemplateProblemCode::*;
        assert_eq!(codes("  \n"), [Empty]);
        assert_eq!(
            codes("{frequency} {vars.} {vars.1x} {brand"),
            [
                UnknownVariable,
                InvalidVarName,
                InvalidVarName,
                UnbalancedBraces
            ]
        );
        assert_eq!(codes("a } b"), [UnbalancedBraces]);
        assert_eq!(
            codes(&format!("{{vars.{}}}", "a".repeat(33))),
            [InvalidVarName]
        );
        assert!(codes(&format!("{{vars.{}}}", "a".repeat(32))).is_empty());
        assert!(codes("{{literal}} {vars._x9}").is_empty());
        let problems = Template::parse("{ brand }").unwrap_err();
        assert!(problems[0].message.contains("{ brand }"), "{problems:?}");
    }

    #[test]
    fn literal_braces_render_as_one_brace() {
        let t = Template::parse("{{x}} {stop}").unwrap();
        let text = t
            .render(&vars(Language::En), &BTreeMap::new(), Language::En)
            .unwrap();
        assert_eq!(text, "{x} UNSUBSCRIBE");
    }

    #[test]
    fn a_recipient_value_cannot_break_a_line_or_hide_text() {
        for (value, want) in [
            ("Sari\nBalas YA ke 3344", "Sari Balas YA ke 3344"),
            ("  a \r\n\t b  ", "a b"),
            ("x\u{202E}y\u{200B}z\u{2028}w", "xyz w"),
            ("\u{0000}\u{0007}", ""),
        ] {
            assert_eq!(sanitize_value(value), want, "{value:?}");
        }
        let long = "é".repeat(150);
        assert_eq!(sanitize_value(&long).chars().count(), MAX_VAR_CHARS);
        let spaced = format!("{} {}", "a".repeat(99), "b");
        assert_eq!(sanitize_value(&spaced), "a".repeat(99));
    }

    #[test]
    fn the_worst_case_is_the_costliest_recipient_message() {
        let t = Template::parse("{brand}: {vars.a} {vars.b}").unwrap();
        let v = vars(Language::En);
        let short = BTreeMap::from([("a".into(), "x".into()), ("b".into(), "y".repeat(90))]);
        let long = BTreeMap::from([("a".into(), "x".repeat(90)), ("b".into(), "y".into())]);
        let lacking = one("a", &"z".repeat(100));
        // Each message fits one segment; the one lacking b is not counted.
        let each = [&short, &long].map(|r| encoding(&t.render(&v, r, Language::En).unwrap()));
        assert_eq!(each, [(Encoding::Gsm7, 1); 2]);
        let worst = t.worst_case_segments(&v, [&short, &long, &lacking], Language::En);
        assert_eq!(worst, Some((Encoding::Gsm7, 1)));
        assert_eq!(t.worst_case_segments(&v, [], Language::En), None);
        // The longest values together make a longer message than any.
        let longest = t.render_longest(&v, [&short, &long], Language::En);
        assert_eq!(
            longest,
            format!(
                "Toko Maju: {} {}\nReply UNSUBSCRIBE to 3344 to stop.",
                "x".repeat(90),
                "y".repeat(90)
            )
        );
        assert_eq!(encoding(&longest), (Encoding::Gsm7, 2));
    }

    #[test]
    fn one_recipient_outside_gsm7_makes_the_worst_case_ucs2() {
        let t =
            Template::parse("{brand}: Halo {vars.nama}, diskon 20% untuk Anda hari ini.").unwrap();
        let v = vars(Language::Id);
        let latin = one("nama", "Bartholomew Alexander");
        let cyrillic = one("nama", "Ира");
        let latin_only = t.worst_case_segments(&v, [&latin], Language::Id);
        assert_eq!(latin_only, Some((Encoding::Gsm7, 1)));
        // Ира's message is shorter, but UCS-2 fits 70 characters a segment.
        let both = t.worst_case_segments(&v, [&latin, &cyrillic], Language::Id);
        assert_eq!(both, Some((Encoding::Ucs2, 2)));
    }
}
