//! Reply texts: built-in templates per [`ReplyKind`] and [`Language`],
//! operator overrides, rendering, template lint and SMS segment counting.
//!
//! ```
//! use keyward::core::{Language, ReplyKind, ReplyOverrides, ReplyVars, Replies};
//!
//! let replies = Replies::new(&ReplyOverrides::default());
//! let vars = ReplyVars {
//!     brand: "Toko Maju",
//!     program: "promo",
//!     frequency: "2-4 msgs/month",
//!     shortcode: "3344",
//!     stop: "UNSUBSCRIBE",
//!     help: "HELP",
//!     start: "START",
//! };
//! let text = replies.render(ReplyKind::Welcome, Language::En, &vars);
//! assert!(text.contains("Toko Maju") && text.contains("UNSUBSCRIBE to 3344"));
//! ```
//!
//! Templates use `{brand}`, `{program}`, `{frequency}`, `{shortcode}`,
//! `{stop}`, `{help}` and `{start}`; `{{` and `}}` are literal braces.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keywords::{Language, KEYWORDS};

/// Which reply a decision asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    Welcome,
    ConfirmRequest,
    AlreadySubscribed,
    Goodbye,
    Help,
    Fallback,
}

impl ReplyKind {
    pub const ALL: [ReplyKind; 6] = [
        ReplyKind::Welcome,
        ReplyKind::ConfirmRequest,
        ReplyKind::AlreadySubscribed,
        ReplyKind::Goodbye,
        ReplyKind::Help,
        ReplyKind::Fallback,
    ];
}

crate::labels!(ReplyKind { Welcome => "welcome", ConfirmRequest => "confirm_request", AlreadySubscribed => "already_subscribed", Goodbye => "goodbye", Help => "help", Fallback => "fallback" });

/// Values substituted into a template. `stop`, `help` and `start` are the
/// keywords to tell people about in the reply's language (see
/// [`Language::stop_keyword`] and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyVars<'a> {
    pub brand: &'a str,
    pub program: &'a str,
    pub frequency: &'a str,
    pub shortcode: &'a str,
    pub stop: &'a str,
    pub help: &'a str,
    pub start: &'a str,
}

impl<'a> ReplyVars<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        match name {
            "brand" => Some(self.brand),
            "program" => Some(self.program),
            "frequency" => Some(self.frequency),
            "shortcode" => Some(self.shortcode),
            "stop" => Some(self.stop),
            "help" => Some(self.help),
            "start" => Some(self.start),
            _ => None,
        }
    }
}

/// The variables a template may use.
pub const VARIABLES: [&str; 7] = [
    "brand",
    "program",
    "frequency",
    "shortcode",
    "stop",
    "help",
    "start",
];

/// Operator overrides of the built-in templates, per language:
///
/// ```toml
/// [replies.id]
/// welcome = "{brand}: Terima kasih! ... Balas {stop} ke {shortcode} untuk berhenti."
/// ```
#[derive(Debug, Deserialize, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReplyOverrides {
    #[serde(default)]
    pub id: BTreeMap<ReplyKind, String>,
    #[serde(default)]
    pub en: BTreeMap<ReplyKind, String>,
    #[serde(default)]
    pub ru: BTreeMap<ReplyKind, String>,
}

impl ReplyOverrides {
    fn for_language(&self, lang: Language) -> &BTreeMap<ReplyKind, String> {
        match lang {
            Language::Id => &self.id,
            Language::En => &self.en,
            Language::Ru => &self.ru,
        }
    }

    /// Lint every override; each problem is prefixed with its place
    /// (`replies.id.welcome: …`), ready for `keyward check-config`.
    pub fn lint(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for lang in Language::ALL {
            for (kind, template) in self.for_language(lang) {
                for p in lint(*kind, template) {
                    problems.push(format!("replies.{lang}.{kind}: {p}"));
                }
            }
        }
        problems
    }
}

/// Built-in templates, professional wording, GSM-7 only for id and en.
fn builtin(kind: ReplyKind, lang: Language) -> &'static str {
    use Language::*;
    use ReplyKind::*;
    match (lang, kind) {
        (Id, Welcome) => "{brand}: Anda berlangganan {program} ({frequency}). Untuk berhenti, balas {stop} ke {shortcode}. Untuk bantuan, balas {help}.",
        (Id, ConfirmRequest) => "{brand}: Balas YA ke {shortcode} untuk mengonfirmasi langganan {program} ({frequency}). Abaikan pesan ini jika Anda tidak memintanya.",
        (Id, AlreadySubscribed) => "{brand}: Anda sudah berlangganan {program}. Untuk berhenti, balas {stop} ke {shortcode}. Untuk bantuan, balas {help}.",
        (Id, Goodbye) => "{brand}: Anda telah berhenti berlangganan {program} dan tidak akan menerima pesan lagi. Untuk berlangganan kembali, balas {start} ke {shortcode}.",
        (Id, Help) => "{brand} - {program}: balas {start} ke {shortcode} untuk berlangganan, {stop} untuk berhenti, {help} untuk bantuan.",
        (Id, Fallback) => "{brand}: Maaf, pesan Anda tidak dikenali. Balas {start} ke {shortcode} untuk berlangganan atau {help} untuk bantuan.",
        (En, Welcome) => "{brand}: You are subscribed to {program} ({frequency}). Reply {stop} to {shortcode} to unsubscribe, or {help} for help.",
        (En, ConfirmRequest) => "{brand}: Reply YES to {shortcode} to confirm your subscription to {program} ({frequency}). If you did not request it, ignore this message.",
        (En, AlreadySubscribed) => "{brand}: You are already subscribed to {program}. Reply {stop} to {shortcode} to unsubscribe, or {help} for help.",
        (En, Goodbye) => "{brand}: You are unsubscribed from {program} and will receive no further messages. Reply {start} to {shortcode} to subscribe again.",
        (En, Help) => "{brand} - {program}: reply {start} to {shortcode} to subscribe, {stop} to unsubscribe, {help} for help.",
        (En, Fallback) => "{brand}: Sorry, we did not recognise your message. Reply {start} to {shortcode} to subscribe or {help} for help.",
        (Ru, Welcome) => "{brand}: вы подписаны на {program} ({frequency}). Чтобы отписаться, ответьте {stop} на {shortcode}. Справка: {help}.",
        (Ru, ConfirmRequest) => "{brand}: чтобы подтвердить подписку на {program} ({frequency}), ответьте ДА на {shortcode}. Если вы не подписывались, не отвечайте.",
        (Ru, AlreadySubscribed) => "{brand}: вы уже подписаны на {program}. Чтобы отписаться, ответьте {stop} на {shortcode}. Справка: {help}.",
        (Ru, Goodbye) => "{brand}: вы отписаны от {program} и больше не будете получать сообщения. Чтобы подписаться снова, ответьте {start} на {shortcode}.",
        (Ru, Help) => "{brand}, {program}: подписка {start}, отписка {stop}, справка {help}. Отправьте на {shortcode}.",
        (Ru, Fallback) => "{brand}: сообщение не распознано. Чтобы подписаться, ответьте {start} на {shortcode}. Справка: {help}.",
    }
}

/// Reply templates: built-ins with operator overrides on top.
#[derive(Debug, Clone)]
pub struct Replies {
    templates: BTreeMap<(Language, ReplyKind), String>,
}

impl Replies {
    pub fn new(overrides: &ReplyOverrides) -> Replies {
        let mut templates = BTreeMap::new();
        for lang in Language::ALL {
            for kind in ReplyKind::ALL {
                let template = overrides
                    .for_language(lang)
                    .get(&kind)
                    .cloned()
                    .unwrap_or_else(|| builtin(kind, lang).to_string());
                templates.insert((lang, kind), template);
            }
        }
        Replies { templates }
    }

    /// The template in force for a kind and language.
    pub fn template(&self, kind: ReplyKind, lang: Language) -> &str {
        self.templates
            .get(&(lang, kind))
            .map(String::as_str)
            .unwrap_or_else(|| builtin(kind, lang))
    }

    /// Renders a reply. Unknown variables and stray braces are kept as they
    /// are (`lint` reports them); rendering never fails.
    pub fn render(&self, kind: ReplyKind, lang: Language, vars: &ReplyVars) -> String {
        render_template(self.template(kind, lang), vars)
    }
}

/// A piece of a parsed template (also read by [`super::compose`] and
/// [`super::style`]).
pub(crate) enum Piece<'t> {
    Text(&'t str),
    Brace(char),
    Var(&'t str),
    Unclosed(&'t str),
    StrayClose,
}

/// Splits a template into pieces; never panics (only ASCII braces are
/// looked at, so every slice is on a char boundary).
pub(crate) fn parse(template: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let bytes = template.as_bytes();
    let (mut i, mut text_start) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'}' => {
                if text_start < i {
                    pieces.push(Piece::Text(&template[text_start..i]));
                }
                let b = bytes[i];
                if bytes.get(i + 1) == Some(&b) {
                    pieces.push(Piece::Brace(b as char));
                    i += 2;
                } else if b == b'}' {
                    pieces.push(Piece::StrayClose);
                    i += 1;
                } else {
                    let close = template[i + 1..]
                        .find(['{', '}'])
                        .map(|off| i + 1 + off)
                        .filter(|&j| bytes[j] == b'}');
                    match close {
                        Some(j) => {
                            pieces.push(Piece::Var(&template[i + 1..j]));
                            i = j + 1;
                        }
                        None => {
                            pieces.push(Piece::Unclosed(&template[i..i + 1]));
                            i += 1;
                        }
                    }
                }
                text_start = i;
            }
            _ => i += 1,
        }
    }
    if text_start < bytes.len() {
        pieces.push(Piece::Text(&template[text_start..]));
    }
    pieces
}

fn render_template(template: &str, vars: &ReplyVars) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    for piece in parse(template) {
        match piece {
            Piece::Text(t) | Piece::Unclosed(t) => out.push_str(t),
            Piece::Brace(c) => out.push(c),
            Piece::Var(name) => match vars.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
            Piece::StrayClose => out.push('}'),
        }
    }
    out
}

/// Problems of a template, one human-readable line each; empty when fine.
///
/// Reports unknown variables, unbalanced braces, an empty template, and a
/// welcome that does not say how to stop (neither `{stop}` nor a literal
/// opt-out keyword such as `UNSUBSCRIBE` or `СТОП`).
pub fn lint(kind: ReplyKind, template: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if template.trim().is_empty() {
        problems.push("template is empty".to_string());
        return problems;
    }
    let mut uses_stop = false;
    for piece in parse(template) {
        match piece {
            Piece::Var(name) if VARIABLES.contains(&name) => uses_stop |= name == "stop",
            Piece::Var(name) => problems.push(format!(
                "unknown variable {{{name}}} (known: {})",
                VARIABLES.map(|v| format!("{{{v}}}")).join(", ")
            )),
            Piece::Unclosed(_) => problems.push(
                "unbalanced braces: '{' without '}' (write {{ for a literal brace)".to_string(),
            ),
            Piece::StrayClose => problems.push(
                "unbalanced braces: '}' without '{' (write }} for a literal brace)".to_string(),
            ),
            Piece::Text(_) | Piece::Brace(_) => {}
        }
    }
    if kind == ReplyKind::Welcome && !uses_stop && !mentions_stop_keyword(template) {
        problems.push(
            "welcome does not say how to stop: use {stop} or an opt-out keyword such as UNSUBSCRIBE"
                .to_string(),
        );
    }
    problems
}

fn mentions_stop_keyword(template: &str) -> bool {
    let words = super::normalize::normalize(template);
    let words: Vec<&str> = words.split(' ').collect();
    KEYWORDS
        .iter()
        .filter(|(_, kind, _)| kind.is_opt_out())
        .any(|(kw, _, _)| {
            let kw: Vec<&str> = kw.split(' ').collect();
            words.windows(kw.len()).any(|w| w == kw.as_slice())
        })
}

/// How an SMS text is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// GSM 03.38 7-bit default alphabet (with its extension table).
    Gsm7,
    /// UCS-2 / UTF-16, for anything outside GSM-7.
    Ucs2,
}

/// GSM 03.38 basic character set (one septet each).
pub(crate) const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table: the septet after the escape (0x1B), and its
/// character (two septets each on the air).
pub(crate) const GSM7_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{000C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

fn gsm7_septets(c: char) -> Option<u32> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.iter().any(|(_, ext)| *ext == c) {
        Some(2)
    } else {
        None
    }
}

/// Encoding and number of SMS segments a text needs.
///
/// GSM-7: 160 septets in one segment, 153 per segment when concatenated;
/// extension characters (`€`, `[`, `{`…) cost two septets and are never split
/// across segments. UCS-2: 70 UTF-16 units in one segment, 67 per segment
/// when concatenated; surrogate pairs are never split. An empty text needs 0
/// segments.
pub fn encoding(text: &str) -> (Encoding, u32) {
    let gsm: Option<Vec<u32>> = text.chars().map(gsm7_septets).collect();
    match gsm {
        Some(costs) => (Encoding::Gsm7, segments(&costs, 160, 153)),
        None => {
            let costs: Vec<u32> = text.chars().map(|c| c.len_utf16() as u32).collect();
            (Encoding::Ucs2, segments(&costs, 70, 67))
        }
    }
}

fn segments(costs: &[u32], single: u32, multi: u32) -> u32 {
    let total: u32 = costs.iter().sum();
    if total == 0 {
        return 0;
    }
    if total <= single {
        return 1;
    }
    let (mut count, mut used) = (1u32, 0u32);
    for &cost in costs {
        if used + cost > multi {
            count += 1;
            used = 0;
        }
        used += cost;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(lang: Language) -> ReplyVars<'static> {
        ReplyVars {
            brand: "Toko Maju",
            program: "promo",
            frequency: match lang {
                Language::Id => "2-4 SMS per bulan",
                Language::En => "2-4 msgs/month",
                Language::Ru => "2-4 SMS в месяц",
            },
            shortcode: "3344",
            stop: lang.stop_keyword(),
            help: lang.help_keyword(),
            start: lang.start_keyword(),
        }
    }

    #[test]
    fn every_built_in_template_passes_lint() {
        for lang in Language::ALL {
            for kind in ReplyKind::ALL {
                let problems = lint(kind, builtin(kind, lang));
                assert!(problems.is_empty(), "{lang} {kind}: {problems:?}");
            }
        }
    }

    #[test]
    fn the_welcome_names_brand_program_frequency_and_how_to_stop() {
        let replies = Replies::new(&ReplyOverrides::default());
        for lang in Language::ALL {
            let v = vars(lang);
            let text = replies.render(ReplyKind::Welcome, lang, &v);
            for needle in [v.brand, v.program, v.frequency, v.stop, v.shortcode, v.help] {
                assert!(text.contains(needle), "{lang}: {text:?} lacks {needle:?}");
            }
        }
        let en = replies.render(ReplyKind::Welcome, Language::En, &vars(Language::En));
        assert!(en.contains("Reply UNSUBSCRIBE to 3344"), "{en}");
        let id = replies.render(ReplyKind::Welcome, Language::Id, &vars(Language::Id));
        assert!(id.contains("balas UNSUBSCRIBE ke 3344"), "{id}");
        let ru = replies.render(ReplyKind::Welcome, Language::Ru, &vars(Language::Ru));
        assert!(ru.contains("ответьте СТОП на 3344"), "{ru}");
    }

    #[test]
    fn the_welcome_fits_two_segments_with_typical_values() {
        let replies = Replies::new(&ReplyOverrides::default());
        for lang in Language::ALL {
            let text = replies.render(ReplyKind::Welcome, lang, &vars(lang));
            let (enc, segs) = encoding(&text);
            assert!(segs <= 2, "{lang}: {segs} segments ({enc:?}) for {text:?}");
            if lang != Language::Ru {
                assert_eq!(enc, Encoding::Gsm7, "{text}");
            }
        }
    }

    #[test]
    fn the_confirm_request_asks_for_the_confirmation_word_of_its_language() {
        let replies = Replies::new(&ReplyOverrides::default());
        for lang in Language::ALL {
            let text = replies.render(ReplyKind::ConfirmRequest, lang, &vars(lang));
            assert!(text.contains(lang.confirm_keyword()), "{text}");
        }
    }

    #[test]
    fn help_and_goodbye_say_how_to_come_back() {
        let replies = Replies::new(&ReplyOverrides::default());
        for lang in Language::ALL {
            let v = vars(lang);
            let help = replies.render(ReplyKind::Help, lang, &v);
            for needle in [v.brand, v.program, v.stop, v.help] {
                assert!(help.contains(needle), "{help}");
            }
            let bye = replies.render(ReplyKind::Goodbye, lang, &v);
            assert!(bye.contains(v.start) && bye.contains(v.shortcode), "{bye}");
        }
    }

    #[test]
    fn overrides_replace_only_their_own_kind_and_language() {
        let overrides: ReplyOverrides = ReplyOverrides {
            id: BTreeMap::from([(ReplyKind::Welcome, "Halo {brand}, {{x}} {stop}".to_string())]),
            ..Default::default()
        };
        let replies = Replies::new(&overrides);
        assert_eq!(
            replies.render(ReplyKind::Welcome, Language::Id, &vars(Language::Id)),
            "Halo Toko Maju, {x} UNSUBSCRIBE"
        );
        assert_eq!(
            replies.template(ReplyKind::Welcome, Language::En),
            builtin(ReplyKind::Welcome, Language::En)
        );
    }

    #[test]
    fn rendering_keeps_unknown_variables_and_stray_braces_verbatim() {
        let v = vars(Language::En);
        assert_eq!(render_template("a {nope} b", &v), "a {nope} b");
        assert_eq!(render_template("a { b", &v), "a { b");
        assert_eq!(render_template("a } b {", &v), "a } b {");
        assert_eq!(render_template("{brand}{program}", &v), "Toko Majupromo");
        assert_eq!(render_template("é{é}ü", &v), "é{é}ü");
    }

    #[test]
    fn lint_reports_unknown_variables_and_unbalanced_braces() {
        let problems = lint(ReplyKind::Help, "{brand} {bogus} {stop");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("{bogus}"));
        assert!(problems[1].contains("unbalanced"));
        assert_eq!(lint(ReplyKind::Help, "x } y").len(), 1);
        assert!(lint(ReplyKind::Help, "{{literal}}").is_empty());
        assert_eq!(
            lint(ReplyKind::Help, "  "),
            vec!["template is empty".to_string()]
        );
    }

    #[test]
    fn lint_requires_the_welcome_to_say_how_to_stop() {
        assert_eq!(lint(ReplyKind::Welcome, "{brand}: welcome!").len(), 1);
        assert!(lint(ReplyKind::Welcome, "{brand}: reply {stop} to quit").is_empty());
        assert!(lint(ReplyKind::Welcome, "{brand}: reply UNSUBSCRIBE to stop").is_empty());
        assert!(lint(ReplyKind::Welcome, "{brand}: ответьте СТОП").is_empty());
        // Other kinds do not need it.
        assert!(lint(ReplyKind::Fallback, "{brand}: sorry").is_empty());
    }

    #[test]
    fn overrides_lint_names_the_place_of_each_problem() {
        let overrides = ReplyOverrides {
            ru: BTreeMap::from([(ReplyKind::Welcome, "{brand}".to_string())]),
            ..Default::default()
        };
        let problems = overrides.lint();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("replies.ru.welcome: "),
            "{problems:?}"
        );
    }

    #[test]
    fn gsm7_fits_160_characters_in_one_segment_and_161_in_two() {
        assert_eq!(encoding(&"a".repeat(160)), (Encoding::Gsm7, 1));
        assert_eq!(encoding(&"a".repeat(161)), (Encoding::Gsm7, 2));
        assert_eq!(encoding(&"a".repeat(306)), (Encoding::Gsm7, 2));
        assert_eq!(encoding(&"a".repeat(307)), (Encoding::Gsm7, 3));
    }

    #[test]
    fn a_euro_sign_costs_two_septets() {
        assert_eq!(
            encoding(&format!("{}€", "a".repeat(158))),
            (Encoding::Gsm7, 1)
        );
        assert_eq!(
            encoding(&format!("{}€", "a".repeat(159))),
            (Encoding::Gsm7, 2)
        );
    }

    #[test]
    fn an_extension_character_is_never_split_across_segments() {
        // 152 septets then '€' (2): does not fit the first 153-septet segment.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(encoding(&text), (Encoding::Gsm7, 3));
    }

    #[test]
    fn ucs2_fits_70_cyrillic_characters_in_one_segment_and_71_in_two() {
        assert_eq!(encoding(&"ж".repeat(70)), (Encoding::Ucs2, 1));
        assert_eq!(encoding(&"ж".repeat(71)), (Encoding::Ucs2, 2));
        assert_eq!(encoding(&"ж".repeat(134)), (Encoding::Ucs2, 2));
        assert_eq!(encoding(&"ж".repeat(135)), (Encoding::Ucs2, 3));
    }

    #[test]
    fn one_non_gsm_character_switches_the_whole_text_to_ucs2() {
        assert_eq!(encoding("Hello 👋"), (Encoding::Ucs2, 1));
        // An emoji is two UTF-16 units.
        assert_eq!(encoding(&"👋".repeat(35)), (Encoding::Ucs2, 1));
        assert_eq!(encoding(&"👋".repeat(36)), (Encoding::Ucs2, 2));
    }

    #[test]
    fn gsm7_accented_letters_and_greek_capitals_stay_gsm7() {
        assert_eq!(encoding("Ça coûte 5€").0, Encoding::Ucs2); // û is not GSM-7
        assert_eq!(encoding("Ça côté é ΔΣ").0, Encoding::Ucs2); // ô is not GSM-7
        assert_eq!(encoding("Ç é ù ΔΣ ß £").0, Encoding::Gsm7);
    }

    #[test]
    fn an_empty_text_needs_no_segment() {
        assert_eq!(encoding(""), (Encoding::Gsm7, 0));
    }

    #[test]
    fn overrides_parse_from_toml_with_the_kind_names() {
        let overrides: ReplyOverrides = toml::from_str(
            "[id]\nwelcome = \"Halo {stop}\"\nconfirm_request = \"YA?\"\n[ru]\nalready_subscribed = \"Уже\"\n",
        )
        .expect("valid overrides");
        assert_eq!(overrides.id.len(), 2);
        assert_eq!(overrides.ru[&ReplyKind::AlreadySubscribed], "Уже");
        assert!(toml::from_str::<ReplyOverrides>("[id]\nbogus = \"x\"\n").is_err());
        assert!(toml::from_str::<ReplyOverrides>("[fr]\nwelcome = \"x\"\n").is_err());
    }
}
