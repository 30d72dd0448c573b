//! The catalogue of programs and short codes, built once from the
//! configuration: which short code a message went to, each program's
//! policy, and every reply rendered as it is sent (brand, frequency, short
//! code and keywords filled in). Used by the inbound path, by staff
//! opt-outs (their goodbye) and by `check-config` (every reply's length).

use std::collections::HashMap;

use chrono::Duration;

use crate::config::{ProgramSettings, Settings};
use crate::core::{Language, Policy, Replies, ReplyKind, ReplyVars, SendingPolicy};

struct Program {
    brand: String,
    frequency: HashMap<Language, String>,
    sending: SendingPolicy,
    policy: Policy,
    replies: Replies,
}

/// A configured short code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortcode {
    pub code: String,
    /// The program a bare keyword (MAU, STOP) applies to.
    pub program: String,
    /// The sender that carries its replies.
    pub sender: String,
    /// The language of its replies when the keyword does not tell.
    pub language: Language,
}

/// A confirmation SMS for a staff opt-out, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffGoodbye {
    pub shortcode: String,
    pub sender: String,
    pub program: String,
    pub text: String,
}

/// Every program and short code of the configuration.
pub struct Programs {
    by_name: HashMap<String, Program>,
    /// Program names in configuration order.
    names: Vec<String>,
    /// In configuration order; the first answers for messages to a number
    /// no short code matches. Never empty (the configuration has one).
    shortcodes: Vec<Shortcode>,
}

impl Programs {
    pub fn new(settings: &Settings) -> Self {
        Self {
            by_name: settings
                .programs
                .iter()
                .map(|p| (p.name.clone(), Program::new(p)))
                .collect(),
            names: settings.programs.iter().map(|p| p.name.clone()).collect(),
            shortcodes: settings
                .shortcodes
                .iter()
                .map(|s| Shortcode {
                    code: s.code.clone(),
                    program: s.program.clone(),
                    sender: s.reply_via.clone(),
                    language: s.language,
                })
                .collect(),
        }
    }

    /// The first short code that serves `program`, if any.
    pub fn shortcode_of(&self, program: &str) -> Option<&Shortcode> {
        self.shortcodes.iter().find(|s| s.program == program)
    }

    /// Program names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn policy(&self, program: &str) -> Option<Policy> {
        self.by_name.get(program).map(|p| p.policy)
    }

    /// The short code a message was sent to (`3344`, `+3344`), and `true`;
    /// when none matches, the first configured one (for the reply) and
    /// `false`.
    pub fn shortcode(&self, to: &str) -> (&Shortcode, bool) {
        fn bare(s: &str) -> &str {
            s.trim().trim_start_matches('+')
        }
        let to = bare(to);
        match self.shortcodes.iter().find(|s| bare(&s.code) == to) {
            Some(code) => (code, true),
            None => (&self.shortcodes[0], false),
        }
    }

    /// `program`'s reply of `kind` in `lang`, as sent from `shortcode`;
    /// `None` for a program not configured.
    pub fn render(
        &self,
        program: &str,
        shortcode: &str,
        kind: ReplyKind,
        lang: Language,
    ) -> Option<String> {
        let p = self.by_name.get(program)?;
        let frequency = p.frequency(lang);
        let vars = ReplyVars {
            brand: &p.brand,
            program,
            frequency: &frequency,
            shortcode,
            stop: lang.stop_keyword(),
            help: lang.help_keyword(),
            start: lang.start_keyword(),
        };
        Some(p.replies.render(kind, lang, &vars))
    }

    /// Every reply of every program in every language, rendered as it
    /// would be sent from the first short code (for `check-config`):
    /// (program, language, kind, text).
    pub fn sample_replies(&self) -> Vec<(String, Language, ReplyKind, String)> {
        let code = &self.shortcodes[0].code;
        let mut names: Vec<&String> = self.names.iter().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            for lang in Language::ALL {
                for kind in ReplyKind::ALL {
                    if let Some(text) = self.render(name, code, kind, lang) {
                        out.push((name.clone(), lang, kind, text));
                    }
                }
            }
        }
        out
    }

    /// The opt-out confirmation of a staff opt-out: the goodbye of
    /// `program` (else of the first short code's program), in the language
    /// of the short code that serves it, sent from that short code.
    pub fn staff_goodbye(&self, program: Option<&str>) -> Option<StaffGoodbye> {
        let code = program
            .and_then(|p| self.shortcodes.iter().find(|s| s.program == p))
            .unwrap_or(&self.shortcodes[0]);
        let name = program.unwrap_or(&code.program);
        Some(StaffGoodbye {
            shortcode: code.code.clone(),
            sender: code.sender.clone(),
            program: name.to_owned(),
            text: self.render(name, &code.code, ReplyKind::Goodbye, code.language)?,
        })
    }
}

impl Program {
    fn new(p: &ProgramSettings) -> Self {
        Self {
            brand: p.brand.clone(),
            frequency: p
                .frequency
                .iter()
                .map(|(lang, text)| (*lang, text.clone()))
                .collect(),
            policy: Policy {
                double_opt_in: p.double_opt_in,
                pending_ttl: Duration::hours(i64::from(p.pending_ttl_hours)),
                ..Policy::default()
            },
            replies: Replies::new(&p.replies),
            sending: p.sending.clone(),
        }
    }

    /// The frequency in `lang`, else in any language configured, else
    /// what the sending cap allows, said in `lang`.
    fn frequency(&self, lang: Language) -> std::borrow::Cow<'_, str> {
        match self
            .frequency
            .get(&lang)
            .or_else(|| Language::ALL.iter().find_map(|l| self.frequency.get(l)))
        {
            Some(text) => text.as_str().into(),
            None => self.sending.frequency_text(lang).into(),
        }
    }
}
