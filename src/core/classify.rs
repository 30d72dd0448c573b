//! Keyword classification: what does a normalised text ask for?
//!
//! Classification does not know the subscriber's state; the state machine
//! ([`super::machine`]) decides what the request means for a given state.
//!
//! Opt-out is lenient and opt-in is strict, because honouring a stop is
//! always safe and sending without consent is not. The rules, in the order
//! they are tried:
//!
//! 1. empty text (after normalisation) → `Unknown` / `Empty`;
//! 2. the first word (or `OPT OUT`) is an opt-out keyword, whatever follows →
//!    `OptOut` (`OptOutAll` for `STOPALL` or a keyword followed by
//!    `ALL`/`SEMUA`/`ВСЕ`), with the program if the next word names one;
//! 3. the first word is one edit (insertion, deletion, substitution or
//!    transposition) away from an opt-out keyword of 6+ letters → `OptOut` /
//!    `Typo` (opt-in keywords never get typo tolerance);
//! 4. a natural-language opt-out phrase anywhere (`please stop texting me`,
//!    `tidak mau lagi`, `не пишите мне`) that no negation covers, or a
//!    whole-message refusal (`gak mau`, `no thanks`, `не надо`) →
//!    `OptOut` / `Phrase`;
//! 5. a message of at most three words that contains an opt-out keyword not
//!    covered by a negation (`ok stop`, `mau stop`) → `OptOut`;
//!    in rules 4 and 5 a question about the programme — an interrogative
//!    (`kapan`, `kenapa`, `kok`, `when`, `why`, `когда`, `почему`) without
//!    the sender (`me`, `saya`, `мне`) or a request frame (`can`, `bisa`,
//!    `можете`) — is not a request → `Unknown` / `Question`;
//! 6. a negated opt-out (`don't stop sending me deals`) → `Unknown` / `Negated`;
//! 7. the message is exactly an opt-in, confirmation or help keyword,
//!    optionally followed by one program name and polite particles (`MAU
//!    PROMO`, `mau dong`, `Start please`, `help?`) → that action; an opt-in or
//!    confirmation keyword followed by anything else is a sentence, not
//!    consent (`Mau tanya harga`) → `Unknown` / `NotConsent`;
//! 8. nothing yet: rules 2–7 again on the respelled text (see
//!    `understand.rs`: letter games `STOOOP`, `S-T-O-P`, `5T0P` become
//!    opt-out or help keywords, colloquial Indonesian `gak usah`, `jgn`,
//!    `udh` becomes standard), for opt-out and help only — never consent
//!    (`Respelled` when a letter game made the keyword);
//! 9. the intent grammar over word classes (Russian words by Snowball stem,
//!    Indonesian ones with affixes stripped), `OptOut` / `Phrase`:
//!    - a strong stop word not negated (`unsubscribe`, `отказываюсь`,
//!      `отписываюсь`);
//!    - a stop, remove or refuse verb not negated and not after a third
//!      person (`promonya berhenti`, `the bus stop`), with an object within
//!      two words (me, my number, the messages, the subscription, the list:
//!      `отмените подписку`, `hapus nomorku`, `end my subscription`), or
//!      alone in a message of two words, or last after a reason (`sudah
//!      pindah, stop`);
//!    - a negated send (`jangan kirimi`, `больше не присылайте`); a plain
//!      negation, and any negated receive, needs a want or a need between
//!      (`gak usah kirim`, `не хочу получать`; `didn't get my order` is no
//!      request);
//!    - a whole-message refusal (`sudah tidak mau lagi`), a trailing `no
//!      thanks`;
//!    - a question about the programme stops all of these (as in 4–5);
//!    - a help word among needs, pronouns and particles only (`tolong bantu
//!      saya`, `помогите мне`, `I need help`) → `Help` / `Phrase`;
//! 10. anything else → `Unknown` / `NoMatch`.
//!
//! Opt-out stays lenient (a leading opt-out keyword wins whatever follows)
//! and opt-in strict (only rule 7, on the words as typed).
//!
//! Language: the language of the matched keyword or phrase. STOP,
//! UNSUBSCRIBE and INFO are both Indonesian and English: they are English
//! unless another word of the message is an Indonesian marker (`dong`, `ya`,
//! `aja`, `tolong`, `lagi`…; colloquial words respelled to standard ones
//! count). Keywords added by a program are Russian when
//! written in Cyrillic and have no language (`None`) otherwise, so the caller
//! uses the program's default.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use regex::{Regex, RegexSet, SetMatches};
use serde::{Deserialize, Serialize};

use super::keywords::{
    class, Kind, Language, ALL_WORDS, DETERMINERS, HELP_PARTICLES, INDONESIAN_MARKERS, KEYWORDS,
    NEGATIONS, PARTICLES, PHRASES, REFUSALS,
};
use super::normalize::normalize;
use super::understand::{id_base, Respeller, WordClass, WordClasses};

/// What the text asks for, independent of the subscriber's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    OptIn,
    Confirm,
    OptOut,
    OptOutAll,
    Help,
    Unknown,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::OptIn,
        Action::Confirm,
        Action::OptOut,
        Action::OptOutAll,
        Action::Help,
        Action::Unknown,
    ];

    /// Whether the action leaves one or all programs.
    pub fn is_opt_out(self) -> bool {
        matches!(self, Action::OptOut | Action::OptOutAll)
    }
}

crate::labels!(Action { OptIn => "opt_in", Confirm => "confirm", OptOut => "opt_out", OptOutAll => "opt_out_all", Help => "help", Unknown => "unknown" });

/// Error of parsing an [`Action`] from an unknown name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseActionError(pub String);

impl fmt::Display for ParseActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown action {:?}", self.0)
    }
}

impl std::error::Error for ParseActionError {}

impl FromStr for Action {
    type Err = ParseActionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| ParseActionError(s.to_string()))
    }
}

/// Why a text got its [`Action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The whole message is the keyword (`STOP`, `STOP ALL`, `MAU`).
    ExactKeyword,
    /// A keyword followed by a program name only (`MAU PROMO`).
    KeywordWithProgram,
    /// A keyword followed by polite particles (`mau dong`, `help?`).
    KeywordWithParticle,
    /// An opt-out keyword followed by other words (`STOP. Thank you`).
    LeadingOptOutKeyword,
    /// The first word is one edit away from a long opt-out keyword.
    Typo,
    /// A natural-language opt-out phrase (`please stop texting me`).
    Phrase,
    /// A short message (at most three words) containing an opt-out keyword.
    ShortWithOptOutKeyword,
    /// A negated opt-out (`don't stop`): not an opt-out.
    Negated,
    /// An opt-in or confirmation keyword inside a sentence: not consent.
    NotConsent,
    /// A keyword spelled with a letter game (`STOOOP`, `S-T-O-P`, `5T0P`).
    Respelled,
    /// A stop word in a question about the programme (`Why did the deals
    /// stop?`, `Kapan diskonnya berhenti?`): not an opt-out.
    Question,
    /// Nothing left after normalisation (whitespace, emoji).
    Empty,
    /// Nothing recognised.
    NoMatch,
}

impl Reason {}

crate::labels!(Reason { ExactKeyword => "exact_keyword", KeywordWithProgram => "keyword_with_program", KeywordWithParticle => "keyword_with_particle", LeadingOptOutKeyword => "leading_opt_out_keyword", Typo => "typo", Phrase => "phrase", ShortWithOptOutKeyword => "short_with_opt_out_keyword", Negated => "negated", NotConsent => "not_consent", Respelled => "respelled", Question => "question", Empty => "empty", NoMatch => "no_match" });

/// The result of classifying one text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub action: Action,
    /// A configured program the text named (`MAU PROMO` → `promo`), spelled
    /// as in the configuration. `None`: the short code's program applies.
    pub program: Option<String>,
    /// Language of the matched keyword or phrase; `None` for `Unknown` and
    /// for a program's own non-Cyrillic keywords.
    pub language: Option<Language>,
    /// Canonical matched keyword (`MAU`, `STOP`, `STOP ALL`) or phrase id
    /// (`please stop`); `None` for `Unknown`.
    pub keyword: Option<String>,
    pub reason: Reason,
}

impl Classification {
    fn unknown(reason: Reason) -> Self {
        Classification {
            action: Action::Unknown,
            program: None,
            language: None,
            keyword: None,
            reason,
        }
    }
}

/// Keywords a program adds to the built-in ones (`[[programs]]` in
/// `keyward.toml`).
#[derive(Debug, Deserialize, Default, Clone, PartialEq, Eq)]
pub struct ProgramKeywords {
    pub name: String,
    #[serde(default)]
    pub opt_in: Vec<String>,
    #[serde(default)]
    pub opt_out: Vec<String>,
    #[serde(default)]
    pub help: Vec<String>,
}

/// What the classifier needs to know about the configuration.
#[derive(Debug, Deserialize, Default, Clone, PartialEq, Eq)]
pub struct ClassifierConfig {
    #[serde(default)]
    pub programs: Vec<ProgramKeywords>,
}

#[derive(Debug, Clone)]
struct Entry {
    tokens: Vec<String>,
    canonical: String,
    kind: Kind,
    /// Sorted, deduplicated; empty for a program keyword of unknown language.
    langs: Vec<Language>,
}

/// The keywords that one word leads.
#[derive(Debug, Clone)]
struct Led {
    /// Longest keyword first.
    entries: Vec<Entry>,
    /// The classification of a text that is this word alone (`STOP`, `MAU`,
    /// `YA`: most traffic), computed at start-up by the full rules, which
    /// depend on nothing but the words of the text. `None` while the
    /// classifier is being built.
    alone: Option<Classification>,
}

#[derive(Debug, Clone)]
struct TypoTarget {
    entry: Entry,
    /// Length of `entry.canonical` in characters.
    chars: usize,
}

#[derive(Debug, Clone)]
struct ProgramWords {
    tokens: Vec<String>,
    name: String,
}

/// Classifies texts. Build it once at start-up: every table and regular
/// expression is compiled in [`Classifier::new`], none per message.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// Keywords by their first word.
    lead: HashMap<String, Led>,
    /// Single-word opt-out keywords of 6+ letters, in table order.
    typo_targets: Vec<TypoTarget>,
    programs: Vec<ProgramWords>,
    particles: Vec<Vec<&'static str>>,
    help_particles: Vec<Vec<&'static str>>,
    /// The phrase patterns, then (at index `PHRASES.len()`) the negation
    /// pattern: one scan of the text says which phrases match and whether
    /// any negation does, and most texts contain no negation.
    phrase_set: RegexSet,
    phrases: Vec<Regex>,
    negation: Regex,
    respeller: Respeller,
    classes: WordClasses,
}

/// Minimum length (in letters) of an opt-out keyword that tolerates a typo.
const TYPO_MIN_KEYWORD_LEN: usize = 6;
/// Messages of at most this many words count an opt-out keyword anywhere.
const SHORT_MESSAGE_WORDS: usize = 3;

fn wrap(pattern: &str) -> String {
    format!(" (?:{pattern}) ")
}

fn tokens_of(normalised: &str) -> Vec<String> {
    normalised
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn guess_language(tokens: &[String]) -> Vec<Language> {
    let cyrillic = tokens
        .iter()
        .flat_map(|t| t.chars())
        .any(|c| matches!(c, '\u{0400}'..='\u{04FF}'));
    if cyrillic {
        vec![Language::Ru]
    } else {
        Vec::new()
    }
}

impl Classifier {
    pub fn new(config: &ClassifierConfig) -> Classifier {
        let mut entries: Vec<Entry> = Vec::new();
        let mut add = |text: &str, kind: Kind, langs: Vec<Language>| {
            let canonical = normalize(text);
            if canonical.is_empty() {
                return;
            }
            if let Some(e) = entries
                .iter_mut()
                .find(|e| e.canonical == canonical && e.kind == kind)
            {
                e.langs.extend(langs);
                e.langs.sort();
                e.langs.dedup();
                return;
            }
            entries.push(Entry {
                tokens: tokens_of(&canonical),
                canonical,
                kind,
                langs,
            });
        };
        for (text, kind, lang) in KEYWORDS {
            add(text, *kind, vec![*lang]);
        }
        for program in &config.programs {
            let lists = [
                (&program.opt_in, Kind::OptIn),
                (&program.opt_out, Kind::OptOut),
                (&program.help, Kind::Help),
            ];
            for (words, kind) in lists {
                for word in words {
                    let langs = guess_language(&tokens_of(&normalize(word)));
                    add(word, kind, langs);
                }
            }
        }

        let typo_targets = entries
            .iter()
            .filter(|e| {
                e.kind.is_opt_out()
                    && e.tokens.len() == 1
                    && e.canonical.chars().count() >= TYPO_MIN_KEYWORD_LEN
            })
            .map(|e| TypoTarget {
                chars: e.canonical.chars().count(),
                entry: e.clone(),
            })
            .collect();

        let mut lead: HashMap<String, Led> = HashMap::new();
        for entry in entries {
            if let Some(first) = entry.tokens.first() {
                lead.entry(first.clone())
                    .or_insert_with(|| Led {
                        entries: Vec::new(),
                        alone: None,
                    })
                    .entries
                    .push(entry);
            }
        }
        for led in lead.values_mut() {
            // Longest first; opt-out before anything else of the same length.
            led.entries
                .sort_by_key(|e| (std::cmp::Reverse(e.tokens.len()), !e.kind.is_opt_out()));
        }

        let programs = config
            .programs
            .iter()
            .map(|p| ProgramWords {
                tokens: tokens_of(&normalize(&p.name)),
                name: p.name.clone(),
            })
            .filter(|p| !p.tokens.is_empty())
            .collect();

        let split = |list: &[&'static str]| -> Vec<Vec<&'static str>> {
            let mut out: Vec<Vec<&'static str>> =
                list.iter().map(|p| p.split(' ').collect()).collect();
            out.sort_by_key(|p| std::cmp::Reverse(p.len()));
            out
        };
        let particles = split(PARTICLES);
        let mut help_list: Vec<&'static str> = PARTICLES.to_vec();
        help_list.extend_from_slice(HELP_PARTICLES);
        let help_particles = split(&help_list);

        let phrase_patterns: Vec<String> = PHRASES.iter().map(|(_, _, p)| wrap(p)).collect();
        let negation_pattern = wrap(&NEGATIONS.join("|"));
        // The patterns are constants of this crate, covered by tests: a
        // failure here is a programming error, not an input error.
        let phrase_set = RegexSet::new(phrase_patterns.iter().chain([&negation_pattern]))
            .expect("built-in phrase patterns compile");
        let phrases = phrase_patterns
            .iter()
            .map(|p| Regex::new(p).expect("built-in phrase pattern compiles"))
            .collect();
        let negation = Regex::new(&negation_pattern).expect("built-in negations compile");

        // Letter games may spell opt-out and help keywords, never consent.
        let respeller = Respeller::new(lead.values().flat_map(|l| {
            l.entries
                .iter()
                .filter(|e| {
                    e.tokens.len() == 1
                        && matches!(e.kind, Kind::OptOut | Kind::OptOutAll | Kind::Help)
                })
                .map(|e| e.canonical.as_str())
        }));

        let mut classifier = Classifier {
            lead,
            typo_targets,
            programs,
            particles,
            help_particles,
            phrase_set,
            phrases,
            negation,
            respeller,
            classes: WordClasses::new(),
        };
        // Every `alone` is still `None` here, so these run the full rules.
        let alone: Vec<(String, Classification)> = classifier
            .lead
            .keys()
            .map(|word| (word.clone(), classifier.classify_normalized(word)))
            .collect();
        for (word, c) in alone {
            if let Some(led) = classifier.lead.get_mut(&word) {
                led.alone = Some(c);
            }
        }
        classifier
    }

    /// Normalises and classifies a text. Never panics.
    pub fn classify(&self, text: &str) -> Classification {
        self.classify_normalized(&normalize(text))
    }

    /// The normalised text as rule 8 reads it: letter games that spell an
    /// opt-out or help keyword respelled as that keyword, colloquial
    /// Indonesian as standard words. Idempotent; for tests and diagnostics
    /// (classification never needs it).
    pub fn respelled(&self, text: &str) -> String {
        let normalised = normalize(text);
        let mut out = String::with_capacity(normalised.len());
        self.respeller
            .respell(&words(&normalised), |t| self.lead.contains_key(t), &mut out);
        out
    }

    /// Classifies a text already passed through [`normalize`] (callers that
    /// also need the normalised text, e.g. for loop detection, normalise
    /// once). Any other string is accepted too and never panics, but may be
    /// classified differently from its normalised form.
    pub fn classify_normalized(&self, normalised: &str) -> Classification {
        let tokens = words(normalised);
        if tokens.is_empty() {
            return Classification::unknown(Reason::Empty);
        }

        // Keywords led by the first word, looked up once.
        let first = self.lead.get(tokens[0]);
        if tokens.len() == 1 {
            // A bare keyword: the answer was computed in `new`.
            if let Some(alone) = first.and_then(|l| l.alone.as_ref()) {
                return alone.clone();
            }
        }
        let found = self.rules(&tokens, first, true);
        if found.action != Action::Unknown
            || matches!(found.reason, Reason::Question | Reason::Empty)
        {
            return found;
        }

        // 8. the respelled form: letter games and colloquial Indonesian.
        // It may find an opt-out or help, never consent.
        let keep = |t: &str| self.lead.contains_key(t);
        let mut respelled = String::new();
        let done = if self.respeller.may_respell(&tokens, keep) {
            self.respeller.respell(&tokens, keep, &mut respelled)
        } else {
            Default::default()
        };
        let respelled_tokens;
        let tokens = if done.any() {
            respelled_tokens = words(&respelled);
            let first = (respelled_tokens.first()).and_then(|t| self.lead.get(*t));
            let mut c = self.rules(&respelled_tokens, first, false);
            if c.action != Action::Unknown {
                if done.letters {
                    c.reason = Reason::Respelled;
                }
                return c;
            }
            if c.reason == Reason::Question {
                return c;
            }
            &respelled_tokens
        } else {
            &tokens
        };

        // 9. the intent grammar over word classes.
        self.grammar(tokens).unwrap_or(found)
    }

    /// Rules 2–7 over `tokens` (not empty), whose first word leads `first`;
    /// `consent` false skips opt-in and confirmation (for respelled text).
    fn rules(&self, tokens: &[&str], first: Option<&Led>, consent: bool) -> Classification {
        // Keywords led by the first word, for steps 2, 3, 7.
        let led = first.map(|l| l.entries.as_slice());

        // 2. leading opt-out keyword
        if let Some(entry) = led_entry(led, tokens, |k| k.is_opt_out()) {
            return self.opt_out(entry, tokens, None);
        }
        // 3. typo of a long opt-out keyword
        if led.is_none() {
            if let Some(entry) = self.typo(tokens[0]) {
                return self.opt_out(entry, tokens, Some(Reason::Typo));
            }
        }

        // 4-6. phrases, short messages, negations. Patterns are matched on
        // " TEXT " so that every pattern starts and ends at a word boundary;
        // built in one allocation, with the tokens joined by single spaces
        // in the middle.
        let len: usize = tokens.iter().map(|t| t.len() + 1).sum();
        let mut hay = String::with_capacity(len + 1);
        hay.push(' ');
        for token in tokens {
            hay.push_str(token);
            hay.push(' ');
        }
        let joined = &hay[1..hay.len() - 1];
        let matched = self.phrase_set.matches(&hay);
        let negations = if matched.matched(PHRASES.len()) {
            self.negation_spans(&hay)
        } else {
            Vec::new()
        };
        if let Some((id, lang)) = self.phrase(&hay, &matched, &negations) {
            if self.is_question(tokens) {
                return Classification::unknown(Reason::Question);
            }
            return Classification {
                action: Action::OptOut,
                program: None,
                language: Some(lang),
                keyword: Some(id.to_string()),
                reason: Reason::Phrase,
            };
        }
        if let Some((refusal, lang)) = REFUSALS.iter().find(|(r, _)| *r == joined) {
            return Classification {
                action: Action::OptOut,
                program: None,
                language: Some(*lang),
                keyword: Some(refusal.to_lowercase()),
                reason: Reason::Phrase,
            };
        }
        if tokens.len() <= SHORT_MESSAGE_WORDS {
            if let Some(c) = self.short_with_opt_out(tokens, &negations) {
                if self.is_question(tokens) {
                    return Classification::unknown(Reason::Question);
                }
                return c;
            }
        }
        if !negations.is_empty() {
            return Classification::unknown(Reason::Negated);
        }

        // 7. strict opt-in, confirmation and help
        let wanted = |k: Kind| !k.is_opt_out() && (consent || k == Kind::Help);
        if let Some(entry) = led_entry(led, tokens, wanted) {
            let particles = if entry.kind == Kind::Help {
                &self.help_particles
            } else {
                &self.particles
            };
            let rest = &tokens[entry.tokens.len()..];
            return match self.strict_tail(rest, particles) {
                Some((program, reason)) => Classification {
                    action: match entry.kind {
                        Kind::OptIn => Action::OptIn,
                        Kind::Confirm => Action::Confirm,
                        Kind::Help => Action::Help,
                        Kind::OptOut | Kind::OptOutAll => Action::OptOut,
                    },
                    program,
                    language: resolve_language(&entry.langs, tokens),
                    keyword: Some(entry.canonical.clone()),
                    reason,
                },
                None if entry.kind == Kind::Help => Classification::unknown(Reason::NoMatch),
                None => Classification::unknown(Reason::NotConsent),
            };
        }
        Classification::unknown(Reason::NoMatch)
    }

    /// Whether `tokens` ask about the programme (`kapan`, `why`, `почему`)
    /// rather than request something of it: an interrogative, and neither
    /// the sender (`me`, `saya`, `мне`) nor a request frame (`can`, `bisa`,
    /// `можете`).
    fn is_question(&self, tokens: &[&str]) -> bool {
        let mut question = false;
        for t in tokens {
            let c = self.classes.exact(t);
            if c.has(class::FIRST | class::REQUEST) {
                return false;
            }
            question |= c.has(class::QUESTION);
        }
        question
    }

    /// Rule 9, the intent grammar (see the module doc).
    fn grammar(&self, tokens: &[&str]) -> Option<Classification> {
        use class::*;
        let mut lower = String::new();
        // On the stack for any SMS-sized text.
        let mut stack = [WordClass::default(); 32];
        let mut heap = Vec::new();
        let classes: &mut [WordClass] = if tokens.len() <= stack.len() {
            &mut stack[..tokens.len()]
        } else {
            heap.resize(tokens.len(), WordClass::default());
            &mut heap
        };
        self.classes.classify(tokens, &mut lower, classes);
        let classes: &[WordClass] = classes;
        let n = classes.len();
        let at = |i: usize| classes.get(i).copied().unwrap_or_default();
        let any = |bits: u16| classes.iter().any(|c| c.has(bits));
        let language = |c: WordClass| {
            let both = [Language::Id, Language::En];
            c.lang.or_else(|| resolve_language(&both, tokens))
        };
        let opt_out = |c: WordClass, rule: &str| Classification {
            action: Action::OptOut,
            program: None,
            language: language(c),
            keyword: Some(rule.to_string()),
            reason: Reason::Phrase,
        };
        // As `is_question`, from the classes at hand.
        let question = any(QUESTION) && !any(FIRST | REQUEST);
        if question && any(STOP_STRONG | STOP | SEND | RECV) {
            return Some(Classification::unknown(Reason::Question));
        }
        // A negation up to four words before `i`, with only wants, needs and
        // the sender between (`не надо меня отписывать`, `tidak mau berhenti`).
        let negated = |i: usize| {
            (i.saturating_sub(4)..i).rev().try_for_each(|j| {
                let c = at(j);
                if c.has(NEG | NEG_IMP) {
                    Err(true)
                } else if c.has(MODAL | WANT | FIRST) {
                    Ok(())
                } else {
                    Err(false)
                }
            }) == Err(true)
        };
        for (i, &c) in classes.iter().enumerate() {
            if c.has(STOP_STRONG) && !negated(i) {
                return Some(opt_out(c, "stop word"));
            }
            let third = i > 0 && at(i - 1).has(THIRD);
            if c.has(STOP) && !negated(i) && !third {
                let object = (i + 1..n.min(i + 3)).any(|k| at(k).has(OBJ | SEND | RECV));
                // A keyword that follows a reason (`sudah pindah, stop`).
                let last = i + 1 == n && self.lead.contains_key(tokens[i]);
                if n <= 2 || object || last {
                    return Some(opt_out(c, "stop + object"));
                }
            }
            if c.has(NEG | NEG_IMP) {
                // `jangan kirim`, `tidak usah kirim`, `не хочу получать`: a
                // plain negation and any receiving need a want or a need.
                let mut k = i + 1;
                let mut modal = false;
                while k < n && (at(k).has(MODAL | WANT | FIRST) || DETERMINERS.contains(&tokens[k]))
                {
                    modal |= at(k).has(MODAL | WANT);
                    k += 1;
                }
                let verb = at(k);
                // `не нужны ваши сообщения`: a need of the messages.
                let send = verb.has(SEND) && (modal || c.has(NEG_IMP));
                if k < n && (send || (verb.has(RECV) && modal)) {
                    return Some(opt_out(c, "negated send"));
                }
                // A whole-message refusal: `sudah tidak mau lagi`.
                let refusal = at(i + 1).has(WANT)
                    && classes
                        .iter()
                        .enumerate()
                        .all(|(j, w)| j == i || j == i + 1 || w.has(FILLER | MODAL | FIRST));
                if refusal {
                    return Some(opt_out(c, "refusal"));
                }
            }
        }
        if tokens.ends_with(&["NO", "THANKS"]) || tokens.ends_with(&["NO", "THANK", "YOU"]) {
            return Some(opt_out(self.classes.exact("NO"), "no thanks"));
        }
        // A help request: a help word among needs, pronouns and particles
        // (`tolong bantu saya`, `помогите мне`, `I need help`).
        let help = classes.iter().find(|c| c.has(HELP));
        if let Some(&h) = help {
            if classes
                .iter()
                .all(|c| c.has(HELP | NEED | FIRST | FILLER | REQUEST))
            {
                return Some(Classification {
                    action: Action::Help,
                    program: None,
                    language: language(h),
                    keyword: Some("help request".to_string()),
                    reason: Reason::Phrase,
                });
            }
        }
        None
    }

    fn lead_entry(&self, tokens: &[&str], want: impl Fn(Kind) -> bool) -> Option<&Entry> {
        let first = tokens.first()?;
        led_entry(
            self.lead.get(*first).map(|l| l.entries.as_slice()),
            tokens,
            want,
        )
    }

    /// A long opt-out keyword one edit away from `first`, a word that leads
    /// no keyword.
    fn typo(&self, first: &str) -> Option<&Entry> {
        let chars = first.chars().count();
        if chars < TYPO_MIN_KEYWORD_LEN - 1 {
            return None;
        }
        self.typo_targets
            .iter()
            .find(|t| {
                may_be_one_edit(first, chars, &t.entry.canonical, t.chars)
                    && strsim::osa_distance(first, &t.entry.canonical) == 1
            })
            .map(|t| &t.entry)
    }

    /// An opt-out led by `entry`: widened to all programs by `STOPALL` or a
    /// following `ALL`, narrowed to a program a following word names.
    /// `reason` overrides the computed one (typos keep `Typo`).
    fn opt_out(&self, entry: &Entry, tokens: &[&str], reason: Option<Reason>) -> Classification {
        // A typo matched one (misspelt) word, a keyword all of its words.
        let consumed = if reason == Some(Reason::Typo) {
            1
        } else {
            entry.tokens.len()
        };
        let rest = tokens.get(consumed..).unwrap_or(&[]);
        let mut c = Classification {
            action: Action::OptOut,
            program: None,
            language: resolve_language(&entry.langs, tokens),
            keyword: Some(entry.canonical.clone()),
            reason: Reason::ExactKeyword,
        };
        let used = if entry.kind == Kind::OptOutAll {
            c.action = Action::OptOutAll;
            0
        } else if let Some(all) = rest.first().filter(|w| ALL_WORDS.contains(w)) {
            c.action = Action::OptOutAll;
            c.keyword = Some(format!("{} {all}", entry.canonical));
            1
        } else if let Some((name, n)) = self.program_at(rest) {
            c.program = Some(name.to_string());
            c.reason = Reason::KeywordWithProgram;
            n
        } else {
            0
        };
        if rest.len() > used {
            c.reason = Reason::LeadingOptOutKeyword;
        }
        if let Some(r) = reason {
            c.reason = r;
        }
        c
    }

    /// A configured program named by the words at the start of `rest`.
    fn program_at(&self, rest: &[&str]) -> Option<(&str, usize)> {
        self.programs
            .iter()
            .filter(|p| {
                p.tokens.len() <= rest.len() && p.tokens.iter().zip(rest).all(|(a, b)| a == b)
            })
            .max_by_key(|p| p.tokens.len())
            .map(|p| (p.name.as_str(), p.tokens.len()))
    }

    /// After a strict keyword: at most one program name and any number of
    /// particles, nothing else.
    fn strict_tail(
        &self,
        mut rest: &[&str],
        particles: &[Vec<&'static str>],
    ) -> Option<(Option<String>, Reason)> {
        let mut program: Option<String> = None;
        let mut particle = false;
        while !rest.is_empty() {
            if program.is_none() {
                if let Some((name, n)) = self.program_at(rest) {
                    program = Some(name.to_string());
                    rest = &rest[n..];
                    continue;
                }
            }
            let p = particles
                .iter()
                .find(|p| p.len() <= rest.len() && p.iter().zip(rest).all(|(a, b)| a == b))?;
            particle = true;
            rest = &rest[p.len()..];
        }
        let reason = if particle {
            Reason::KeywordWithParticle
        } else if program.is_some() {
            Reason::KeywordWithProgram
        } else {
            Reason::ExactKeyword
        };
        Some((program, reason))
    }

    /// Byte spans (inside `hay`, without the boundary spaces) of negations.
    fn negation_spans(&self, hay: &str) -> Vec<(usize, usize)> {
        spans(&self.negation, hay)
    }

    /// The first phrase of `matched` (the matches of `phrase_set` in `hay`)
    /// that has a match outside the `negations`.
    fn phrase(
        &self,
        hay: &str,
        matched: &SetMatches,
        negations: &[(usize, usize)],
    ) -> Option<(&'static str, Language)> {
        for index in matched.iter().filter(|&i| i < PHRASES.len()) {
            let (id, lang, _) = PHRASES.get(index)?;
            let free = negations.is_empty()
                || spans(self.phrases.get(index)?, hay)
                    .iter()
                    .any(|s| !negations.iter().any(|n| overlaps(*s, *n)));
            if free {
                return Some((id, *lang));
            }
        }
        None
    }

    fn short_with_opt_out(
        &self,
        tokens: &[&str],
        negations: &[(usize, usize)],
    ) -> Option<Classification> {
        // Position of each token inside " TEXT ".
        let mut start = 1;
        for (i, token) in tokens.iter().enumerate() {
            let span = (start, start + token.len());
            start = span.1 + 1;
            if i == 0 || negations.iter().any(|n| overlaps(span, *n)) {
                continue;
            }
            let rest = &tokens[i..];
            if let Some(entry) = self.lead_entry(rest, |k| k.is_opt_out()) {
                let mut c = self.opt_out(entry, rest, None);
                c.language = resolve_language(&entry.langs, tokens);
                c.reason = Reason::ShortWithOptOutKeyword;
                return Some(c);
            }
        }
        None
    }
}

/// The non-empty words of `text` between single spaces, as
/// `text.split(' ').filter(|t| !t.is_empty())` but with a byte scan (a space
/// is one byte and never part of another character), which is much cheaper
/// on texts of a few words.
fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::with_capacity(4);
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        if byte == b' ' {
            if i > start {
                out.push(&text[start..i]);
            }
            start = i + 1;
        }
    }
    if text.len() > start {
        out.push(&text[start..]);
    }
    out
}

/// The first of `led` (the keywords led by the first token) that `want`s
/// its kind and whose words all start `tokens`.
fn led_entry<'a>(
    led: Option<&'a [Entry]>,
    tokens: &[&str],
    want: impl Fn(Kind) -> bool,
) -> Option<&'a Entry> {
    led?.iter().find(|e| {
        want(e.kind)
            && e.tokens.len() <= tokens.len()
            && e.tokens.iter().zip(tokens).all(|(a, b)| a == b)
    })
}

/// A cheap necessary condition for `strsim::osa_distance(a, b) == 1`
/// (`a_chars`, `b_chars`: lengths in characters), so that the quadratic
/// distance only runs on near misses. One edit changes the length by at most
/// one character; between words of equal length (substitution,
/// transposition) it changes at most two positions; between words whose
/// lengths differ by one (insertion, deletion) the common prefix and suffix
/// cover the shorter word.
fn may_be_one_edit(a: &str, a_chars: usize, b: &str, b_chars: usize) -> bool {
    match a_chars.abs_diff(b_chars) {
        0 => a
            .chars()
            .zip(b.chars())
            .filter(|(x, y)| x != y)
            .nth(2)
            .is_none(),
        1 => {
            let prefix = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
            let suffix = (a.chars().rev().zip(b.chars().rev()))
                .take_while(|(x, y)| x == y)
                .count();
            prefix + suffix >= a_chars.min(b_chars)
        }
        _ => false,
    }
}

/// All matches of `re` in `hay`, overlapping ones included, as spans without
/// the boundary spaces the patterns consume.
fn spans(re: &Regex, hay: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < hay.len() {
        let Some(m) = re.find_at(hay, at) else { break };
        out.push((m.start() + 1, m.end().saturating_sub(1)));
        // Patterns start with a (one-byte) space: restart just after it so
        // that a match sharing that space with the previous one is found.
        at = m.start() + 1;
    }
    out
}

fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

fn resolve_language(langs: &[Language], tokens: &[&str]) -> Option<Language> {
    match langs {
        [] => None,
        [one] => Some(*one),
        _ if langs.contains(&Language::Id) && langs.contains(&Language::En) => {
            // An affixed marker counts too (`stop kirimin`: `kirim`).
            let marker = |t: &str| INDONESIAN_MARKERS.contains(&t);
            if tokens
                .iter()
                .any(|t| marker(t) || id_base(t, marker).is_some())
            {
                Some(Language::Id)
            } else {
                Some(Language::En)
            }
        }
        [first, ..] => Some(*first),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier() -> Classifier {
        Classifier::new(&ClassifierConfig {
            programs: vec![
                ProgramKeywords {
                    name: "promo".into(),
                    opt_in: vec!["GABUNG".into()],
                    opt_out: vec!["KELUAR".into(), "ВЫХОД".into()],
                    help: vec!["TANYA".into()],
                },
                ProgramKeywords {
                    name: "news".into(),
                    ..Default::default()
                },
            ],
        })
    }

    #[test]
    fn the_built_in_tables_compile() {
        let c = classifier();
        assert_eq!(c.phrases.len(), PHRASES.len());
    }

    #[test]
    fn a_bare_stop_is_an_english_opt_out_of_the_short_codes_program() {
        let c = classifier().classify("STOP");
        assert_eq!(c.action, Action::OptOut);
        assert_eq!(c.program, None);
        assert_eq!(c.language, Some(Language::En));
        assert_eq!(c.keyword.as_deref(), Some("STOP"));
        assert_eq!(c.reason, Reason::ExactKeyword);
    }

    #[test]
    fn stop_with_an_indonesian_particle_is_indonesian() {
        let c = classifier().classify("stop dong");
        assert_eq!(c.action, Action::OptOut);
        assert_eq!(c.language, Some(Language::Id));
    }

    #[test]
    fn a_keyword_followed_by_all_leaves_every_program() {
        let c = classifier().classify("unreg all");
        assert_eq!(c.action, Action::OptOutAll);
        assert_eq!(c.keyword.as_deref(), Some("UNREG ALL"));
        assert_eq!(c.reason, Reason::ExactKeyword);
    }

    #[test]
    fn an_opt_in_naming_a_program_reports_it_as_configured() {
        let c = classifier().classify("mau Promo");
        assert_eq!(c.action, Action::OptIn);
        assert_eq!(c.program.as_deref(), Some("promo"));
        assert_eq!(c.reason, Reason::KeywordWithProgram);
    }

    #[test]
    fn an_opt_in_inside_a_sentence_is_not_consent() {
        let c = classifier().classify("Mau tanya harga");
        assert_eq!(c.action, Action::Unknown);
        assert_eq!(c.reason, Reason::NotConsent);
        assert_eq!(c.language, None);
    }

    #[test]
    fn a_typo_of_a_long_opt_out_keyword_is_an_opt_out() {
        let c = classifier().classify("UNSUBSRIBE");
        assert_eq!(c.action, Action::OptOut);
        assert_eq!(c.reason, Reason::Typo);
        assert_eq!(c.keyword.as_deref(), Some("UNSUBSCRIBE"));
    }

    #[test]
    fn a_typo_of_an_opt_in_keyword_is_not_an_opt_in() {
        assert_eq!(classifier().classify("SUBSCRIBR").action, Action::Unknown);
        assert_eq!(classifier().classify("DAFTRA").action, Action::Unknown);
    }

    #[test]
    fn a_negated_stop_is_not_an_opt_out() {
        let c = classifier().classify("don't stop sending me deals");
        assert_eq!(c.action, Action::Unknown);
        assert_eq!(c.reason, Reason::Negated);
    }

    #[test]
    fn an_opt_out_phrase_outside_a_negation_still_counts() {
        let c = classifier().classify("I can't stop laughing, please stop texting me");
        assert_eq!(c.action, Action::OptOut);
        assert_eq!(c.reason, Reason::Phrase);
    }

    #[test]
    fn program_keywords_are_added_to_the_built_in_ones() {
        let c = classifier();
        assert_eq!(c.classify("keluar").action, Action::OptOut);
        assert_eq!(c.classify("keluar").language, None);
        assert_eq!(c.classify("выход").language, Some(Language::Ru));
        assert_eq!(c.classify("gabung dong").action, Action::OptIn);
        assert_eq!(c.classify("tanya").action, Action::Help);
    }

    #[test]
    fn spans_include_overlapping_matches() {
        let re = Regex::new(&wrap("A B|B C")).expect("test pattern");
        assert_eq!(spans(&re, " A B C "), vec![(1, 4), (3, 6)]);
    }

    proptest::proptest! {
        #[test]
        fn the_typo_prefilter_never_rejects_one_edit(
            a in "[ABCSTOП]{0,9}",
            b in "[ABCSTOП]{0,9}",
            at in 0usize..10,
            edit in 0u8..4,
            c in proptest::char::any(),
        ) {
            // `b` unrelated to `a`, then `a` after one edit of each kind.
            let chars: Vec<char> = a.chars().collect();
            let i = at.min(chars.len());
            let mut edited = chars.clone();
            match edit {
                0 => edited.insert(i, c),
                1 if i < chars.len() => { edited.remove(i); }
                2 if i < chars.len() => edited[i] = c,
                _ if i + 1 < chars.len() => edited.swap(i, i + 1),
                _ => {}
            }
            let edited: String = edited.into_iter().collect();
            for other in [b, edited] {
                let (n, m) = (a.chars().count(), other.chars().count());
                if strsim::osa_distance(&a, &other) == 1 {
                    proptest::prop_assert!(may_be_one_edit(&a, n, &other, m), "{a:?} {other:?}");
                    proptest::prop_assert!(may_be_one_edit(&other, m, &a, n), "{a:?} {other:?}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn words_are_the_non_empty_pieces_between_spaces(text in "[ aZ\u{0}\u{A0}\u{3000}П🛑]{0,12}") {
            let expected: Vec<&str> = text.split(' ').filter(|t| !t.is_empty()).collect();
            proptest::prop_assert_eq!(words(&text), expected);
        }
    }

    #[test]
    fn actions_round_trip_through_their_names() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
    }
}
