//! The language lint for broadcasts (issue #15): the rule of the trade is
//! to write professionally, and carriers and subscribers judge a sender by
//! it. [`check`] reads a broadcast (a template or a rendered text) and
//! reports what a careful editor would send back, one [`Finding`] per kind
//! of defect:
//!
//! - [`FindingCode::Abbreviation`]: SMS abbreviations and non-standard
//!   spelling (`yg`, `utk`, `gak`, `pls`, `ur`, `спс`, `щас`, `disini`),
//!   from curated lists (`data/style_id.tsv`, drawn from indo-collex;
//!   `data/style_en.tsv`, `data/style_ru.tsv`), plus two rules: a word
//!   reduplicated with `2` (`hati2` for `hati-hati`) and a letter typed three
//!   times or more (`gratisss`);
//! - [`FindingCode::DigitSpelling`]: digits typed for letters (`p4g1`,
//!   `h3llo`, `D1SK0N`, `gr8`, `2day`) — but not model numbers, units,
//!   codes or acronyms (`4G`, `B2B`, `iPhone15`, `mp3`, `HEMAT20`, `B1G1`);
//! - [`FindingCode::Shouting`]: a text mostly in capitals — 60 % of the
//!   letters and at least 12 capitals, not counting the brand, keywords
//!   (`UNSUBSCRIBE`, `СТОП`), words with digits (`HEMAT20`) and words in
//!   capitals of up to four letters (`SMS`, `BPJS`, and short words alike);
//! - [`FindingCode::Exclamations`]: `!!` and more, `?!?!`;
//! - [`FindingCode::LinkShortener`]: `bit.ly`, `s.id`, `clck.ru`... which
//!   carriers filter (`data/style_links.tsv`);
//! - [`FindingCode::NoBrand`]: a marketing text that does not name its
//!   sender — by its words in a row however cased or punctuated (`TOKO
//!   MAJU`, `Toko-Maju`, `TokoMaju`), declined in Russian (`в «Ромашке»`),
//!   as `{brand}`, or in a link the reader sees (`tokomaju.co.id`). Notices
//!   (an OTP, a delivery, a bill) are not held to it: the sender ID already
//!   says who writes, and what matters there is the facts. Every other
//!   check applies to both kinds.
//!
//! Words are taken as written, compared case-insensitively with the lists;
//! the contents of `{...}` variables, links, e-mail addresses, `@handles`,
//! `#hashtags` and the brand's own words are never read as words.
//!
//! Language: entries that are also words of another language (`org` is
//! Indonesian "orang" and English; `hrs` is "harus" and hours) are marked
//! `strict` and apply only in a text of their language — `lang` when the
//! caller knows it, else a guess from the text's function words. Every other
//! entry applies to any text, since broadcasts mix languages; where a form is
//! in several lists the message's language gives the suggestion.
//!
//! Everything here is a pure function of its arguments and of lists compiled
//! into the binary.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};
use serde::{Deserialize, Serialize};

use super::keywords::{Language, KEYWORDS};
use super::reply::{parse, Piece};

/// What a broadcast is: marketing (held to every rule) or a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StyleKind {
    Marketing,
    Notice,
}

/// The kind of a [`Finding`]. Serialised in snake case, as [`FindingCode::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingCode {
    Abbreviation,
    DigitSpelling,
    Shouting,
    Exclamations,
    LinkShortener,
    NoBrand,
}

impl FindingCode {
    pub const ALL: [FindingCode; 6] = [
        FindingCode::Abbreviation,
        FindingCode::DigitSpelling,
        FindingCode::Shouting,
        FindingCode::Exclamations,
        FindingCode::LinkShortener,
        FindingCode::NoBrand,
    ];
}

crate::labels!(FindingCode { Abbreviation => "abbreviation", DigitSpelling => "digit_spelling", Shouting => "shouting", Exclamations => "exclamations", LinkShortener => "link_shortener", NoBrand => "no_brand" });

/// One kind of defect in a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: FindingCode,
    /// The offending words (or runs, or links) as written, each once, in
    /// order of appearance. Empty for [`FindingCode::NoBrand`].
    pub words: Vec<String>,
    /// Char offset (not byte) in the checked text of the first of `words`;
    /// 0 for [`FindingCode::NoBrand`].
    pub position: usize,
    /// What is wrong and, where known, the standard form to write instead.
    pub message: String,
}

/// Checks a broadcast text; findings come in the order of [`FindingCode::ALL`],
/// at most one per code. `brand` is the sender's brand as configured (an
/// empty brand disables [`FindingCode::NoBrand`]).
///
/// ```
/// use keyward::core::style::{check, FindingCode, StyleKind};
/// use keyward::core::Language;
///
/// let findings = check(
///     "Toko Maju: diskon 30% utk semua produk!!",
///     Some(Language::Id),
///     "Toko Maju",
///     StyleKind::Marketing,
/// );
/// let codes: Vec<FindingCode> = findings.iter().map(|f| f.code).collect();
/// assert_eq!(codes, [FindingCode::Abbreviation, FindingCode::Exclamations]);
/// assert_eq!(findings[0].words, ["utk"]);
/// assert_eq!(findings[0].position, 22);
/// assert!(findings[0].message.contains("utk → untuk"));
/// ```
pub fn check(text: &str, lang: Option<Language>, brand: &str, kind: StyleKind) -> Vec<Finding> {
    let lists = lists();
    let masked = mask_variables(text);
    let tokens = tokens(&masked.text);
    let brand = BrandWords::new(brand);
    let mut stemmer = None;
    let words: Vec<Word> = tokens
        .iter()
        .filter(|t| t.link.is_none() && !t.skip)
        .filter_map(|t| t.word.clone())
        .filter(|w| !brand.is_brand_word(&w.text, &mut stemmer))
        .collect();
    let lang = lang.or_else(|| guess_language(&words, lists));

    let mut findings = Vec::new();
    findings.extend(abbreviations(&words, lang, lists));
    findings.extend(digit_spelling(&words, lists));
    findings.extend(shouting(&words));
    findings.extend(exclamations(&masked.text));
    findings.extend(link_shorteners(&tokens, lists));
    if kind == StyleKind::Marketing && !masked.has_brand_variable && !brand.named_in(&tokens) {
        findings.push(Finding {
            code: FindingCode::NoBrand,
            words: Vec::new(),
            position: 0,
            message: format!(
                "a marketing message must say who sends it: name the brand \"{}\" (or write {{brand}})",
                brand.written
            ),
        });
    }
    findings
}

// --- Lists -------------------------------------------------------------------

/// One entry of an abbreviation list.
#[derive(Debug, Clone)]
struct Entry {
    lang: Language,
    standard: &'static str,
    /// Written in capitals it is an acronym (`SMP`, `LG`), not this.
    acronym: bool,
    /// Applies only in a text of `lang`.
    strict: bool,
    /// Not right after a number (`500 g`).
    unit: bool,
}

#[derive(Debug)]
struct Lists {
    /// Lower-case form → entries, one per language that lists it.
    abbreviations: HashMap<String, Vec<Entry>>,
    /// Lower-case digit game → the word it spells.
    digits: HashMap<String, &'static str>,
    shorteners: HashSet<&'static str>,
    /// Words that a digit game in capitals may spell (lower case).
    vocabulary: HashSet<String>,
}

const STYLE_ID: &str = include_str!("data/style_id.tsv");
const STYLE_EN: &str = include_str!("data/style_en.tsv");
const STYLE_RU: &str = include_str!("data/style_ru.tsv");
const STYLE_DIGITS: &str = include_str!("data/style_digits.tsv");
const STYLE_LINKS: &str = include_str!("data/style_links.tsv");
const STYLE_WORDS: &str = include_str!("data/style_words.tsv");

fn rows(tsv: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    tsv.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').collect())
}

/// The lists, parsed once: they are constants of the binary, so this is
/// still a pure function of the text.
fn lists() -> &'static Lists {
    static LISTS: OnceLock<Lists> = OnceLock::new();
    LISTS.get_or_init(|| {
        let mut abbreviations: HashMap<String, Vec<Entry>> = HashMap::new();
        let mut vocabulary: HashSet<String> = HashSet::new();
        for (tsv, lang) in [
            (STYLE_ID, Language::Id),
            (STYLE_EN, Language::En),
            (STYLE_RU, Language::Ru),
        ] {
            for row in rows(tsv) {
                let flags = row.get(2).copied().unwrap_or("");
                let has = |f: &str| flags.split(',').any(|x| x == f);
                abbreviations
                    .entry(row[0].to_lowercase())
                    .or_default()
                    .push(Entry {
                        lang,
                        standard: row[1],
                        acronym: has("acronym"),
                        strict: has("strict"),
                        unit: has("unit"),
                    });
                if lang == Language::Id {
                    vocabulary.extend(row[1].split(' ').map(str::to_lowercase));
                }
            }
        }
        vocabulary.extend(rows(STYLE_WORDS).map(|r| r[0].to_lowercase()));
        Lists {
            abbreviations,
            digits: rows(STYLE_DIGITS)
                .map(|r| (r[0].to_lowercase(), r[1]))
                .collect(),
            shorteners: rows(STYLE_LINKS).map(|r| r[0]).collect(),
            vocabulary,
        }
    })
}

// --- Reading the text ----------------------------------------------------------

struct Masked {
    /// The text with every `{...}` variable (braces included) and every
    /// `{{`/`}}` blanked out char for char, so char offsets stay those of the
    /// original.
    text: String,
    has_brand_variable: bool,
}

fn mask_variables(text: &str) -> Masked {
    let mut out = String::with_capacity(text.len());
    let mut has_brand_variable = false;
    let blank = |out: &mut String, chars: usize| out.extend(std::iter::repeat_n(' ', chars));
    for piece in parse(text) {
        match piece {
            Piece::Text(t) | Piece::Unclosed(t) => out.push_str(t),
            Piece::StrayClose => out.push('}'),
            Piece::Brace(_) => blank(&mut out, 2),
            Piece::Var(name) => {
                has_brand_variable |= name == "brand";
                blank(&mut out, name.chars().count() + 2);
            }
        }
    }
    Masked {
        text: out,
        has_brand_variable,
    }
}

/// A word: a whitespace-separated token without its leading and trailing
/// punctuation.
#[derive(Debug, Clone)]
struct Word {
    text: String,
    lower: String,
    /// Char offset in the text.
    position: usize,
    /// The token before it is a number (`500 g`).
    after_number: bool,
}

#[derive(Debug)]
struct Token<'a> {
    raw: &'a str,
    /// Char offset of `raw` in the text.
    position: usize,
    word: Option<Word>,
    /// The token is a link: its host, lower case, without `www.`.
    link: Option<String>,
    /// An e-mail address, `@handle` or `#hashtag`: not prose.
    skip: bool,
}

fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut spans = Vec::new(); // (byte start, byte end, char offset)
    let mut start = None;
    for (offset, (byte, c)) in text.char_indices().enumerate() {
        match (c.is_whitespace(), start) {
            (true, Some((b, p))) => {
                spans.push((b, byte, p));
                start = None;
            }
            (false, None) => start = Some((byte, offset)),
            _ => {}
        }
    }
    if let Some((b, p)) = start {
        spans.push((b, text.len(), p));
    }
    let mut out: Vec<Token> = Vec::with_capacity(spans.len());
    for (b, e, p) in spans {
        let after_number = out.last().is_some_and(|t| is_number(t.raw));
        out.push(token(&text[b..e], p, after_number));
    }
    out
}

fn is_number(raw: &str) -> bool {
    let core = raw.trim_matches(|c: char| !c.is_alphanumeric());
    !core.is_empty()
        && core
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '-' | '/'))
        && core.chars().any(|c| c.is_ascii_digit())
}

fn token(raw: &str, position: usize, after_number: bool) -> Token<'_> {
    let link = link_host(raw);
    let trimmed_start = raw.trim_start_matches(|c: char| !c.is_alphanumeric());
    let lead = raw[..raw.len() - trimmed_start.len()].chars().count();
    let core = trimmed_start.trim_end_matches(|c: char| !c.is_alphanumeric());
    let skip = raw.contains('@') || raw[..raw.len() - trimmed_start.len()].contains('#');
    let word = (!core.is_empty()).then(|| Word {
        text: core.to_string(),
        lower: core.to_lowercase(),
        position: position + lead,
        after_number,
    });
    Token {
        raw,
        position,
        word,
        link,
        skip,
    }
}

/// Top-level domains that make `name.tld` a link even without a scheme, a
/// `www.` or a path.
const TLDS: &[&str] = &[
    "com", "net", "org", "id", "ru", "co", "io", "me", "ly", "gl", "gd", "cc", "gy", "su", "to",
    "in", "it", "be", "at", "info", "biz", "xyz", "online", "shop", "store", "app", "asia", "my",
    "sg", "uk", "us", "de", "fr", "рф", "site", "link", "click",
];

/// The host of `raw` if it is a link (`https://x.y/...`, `www.x.y`,
/// `x.y/path`, or `x.tld` for a known top-level domain), lower case, without
/// `www.`.
fn link_host(raw: &str) -> Option<String> {
    let s = raw.trim_start_matches(['(', '[', '<', '"', '\'', '«']);
    let s = s.trim_end_matches(|c: char| ".,;:!?)]>\"'»".contains(c));
    let lower = s.to_lowercase();
    let (rest, scheme) = match lower.split_once("://") {
        Some((scheme, rest)) if scheme == "http" || scheme == "https" => (rest, true),
        Some(_) => return None,
        None => (lower.as_str(), false),
    };
    let (host, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], true),
        None => (rest, false),
    };
    let host = host.split(':').next().unwrap_or(host);
    let www = host.starts_with("www.");
    let host = host.strip_prefix("www.").unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    let well_formed = labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.chars().all(char::is_alphabetic));
    if !well_formed {
        return None;
    }
    let tld = labels[labels.len() - 1];
    (scheme || www || path || TLDS.contains(&tld)).then(|| host.to_string())
}

/// The language a text is written in, from its function words, when the
/// caller does not know it; `None` when the text does not say.
fn guess_language(words: &[Word], lists: &Lists) -> Option<Language> {
    const ID: &[&str] = &[
        "yang", "dan", "di", "ke", "dari", "untuk", "dengan", "anda", "kami", "ini", "itu", "hari",
        "hanya", "semua", "berlaku", "diskon", "gratis", "dapatkan", "sampai", "pada", "atau",
        "setiap", "beli", "belanja", "tidak", "sudah", "akan", "bisa", "kunjungi", "hubungi",
        "selamat", "terima", "kasih", "mulai", "pukul", "segera", "harga", "juga", "lagi", "baru",
        "kita", "ada", "mau", "jangan", "sekarang", "isi", "ulang", "paket", "cek",
    ];
    const EN: &[&str] = &[
        "the", "and", "to", "for", "of", "on", "at", "with", "your", "you", "our", "we", "this",
        "is", "are", "now", "get", "off", "only", "today", "all", "in", "from", "free", "new",
        "order", "shop", "save", "until", "by", "will", "be", "it", "just", "more", "here", "join",
        "reply", "thanks", "see", "can", "don't",
    ];
    let (mut id, mut en, mut cyrillic, mut latin) = (0, 0, 0, 0);
    for w in words {
        for c in w.text.chars().filter(|c| c.is_alphabetic()) {
            if matches!(c, '\u{0400}'..='\u{04FF}') {
                cyrillic += 1;
            } else if c.is_ascii_alphabetic() {
                latin += 1;
            }
        }
        let l = w.lower.as_str();
        if ID.contains(&l) {
            id += 1;
        } else if EN.contains(&l) {
            en += 1;
        } else if let Some(entries) = lists.abbreviations.get(l) {
            // A known colloquial form is a sign of its language too.
            if entries.iter().all(|e| e.lang == Language::Id && !e.strict) {
                id += 1;
            }
        }
    }
    if cyrillic > latin {
        Some(Language::Ru)
    } else if id > en {
        Some(Language::Id)
    } else if en > id {
        Some(Language::En)
    } else {
        None
    }
}

/// The brand's words, to exempt them from the checks and to look for them.
struct BrandWords {
    written: String,
    /// Each word of the brand normalised (see [`brand_form`]).
    forms: HashSet<String>,
    /// The brand's words normalised (see [`brand_form`]) and joined.
    joined: String,
}

/// A word as the brand check compares it: lower case; a Cyrillic word by its
/// Snowball stem, so that a declined brand (`в «Ромашке»`) is still named.
fn brand_form(word: &str, stemmer: &mut Option<Stemmer>) -> String {
    let lower = word.to_lowercase().replace('ё', "е");
    if lower.chars().any(|c| matches!(c, '\u{0400}'..='\u{04FF}')) {
        let stemmer = stemmer.get_or_insert_with(|| Stemmer::create(Algorithm::Russian));
        stemmer.stem(&lower).into_owned()
    } else {
        lower
    }
}

fn alnum_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

impl BrandWords {
    fn new(brand: &str) -> BrandWords {
        let mut stemmer = None;
        let forms: Vec<String> = alnum_words(brand)
            .map(|w| brand_form(w, &mut stemmer))
            .collect();
        BrandWords {
            written: brand.trim().to_string(),
            joined: forms.concat(),
            forms: forms.into_iter().collect(),
        }
    }

    /// Whether a word of the text is (a word of) the brand: `Toko`, `MAJU`,
    /// `TokoMaju`, `«Ромашке»`.
    fn is_brand_word(&self, word: &str, stemmer: &mut Option<Stemmer>) -> bool {
        let forms: Vec<String> = alnum_words(word).map(|w| brand_form(w, stemmer)).collect();
        !forms.is_empty()
            && (forms.iter().all(|f| self.forms.contains(f)) || forms.concat() == self.joined)
    }

    /// Whether the text names the brand: its words in a row, however they
    /// are cased and punctuated (`TOKO MAJU`, `Toko-Maju`, `TokoMaju`). An
    /// empty brand counts as named.
    fn named_in(&self, tokens: &[Token]) -> bool {
        if self.joined.is_empty() {
            return true;
        }
        let mut stemmer = None;
        let forms: Vec<String> = tokens
            .iter()
            .flat_map(|t| alnum_words(t.raw))
            .map(|w| brand_form(w, &mut stemmer))
            .collect();
        (0..forms.len()).any(|start| {
            let mut joined = String::new();
            for form in &forms[start..] {
                joined.push_str(form);
                if joined.len() >= self.joined.len() {
                    break;
                }
            }
            joined == self.joined
        })
    }
}

// --- The checks ------------------------------------------------------------------

fn is_all_caps(word: &str) -> bool {
    word.chars().any(char::is_alphabetic) && !word.chars().any(char::is_lowercase)
}

/// Collects (word, note) pairs into one finding, each word once.
fn finding(code: FindingCode, hits: Vec<(&Word, String)>, lead: &str) -> Option<Finding> {
    let position = hits.first()?.0.position;
    let mut seen = HashSet::new();
    let mut words = Vec::new();
    let mut notes = Vec::new();
    for (w, note) in hits {
        if seen.insert(w.text.clone()) {
            words.push(w.text.clone());
            notes.push(note);
        }
    }
    Some(Finding {
        code,
        words,
        position,
        message: format!("{lead}: {}", notes.join(", ")),
    })
}

/// The standard form of `word` from the lists, if an entry applies.
fn listed<'l>(word: &Word, lang: Option<Language>, lists: &'l Lists) -> Option<&'l Entry> {
    let entries = lists.abbreviations.get(&word.lower)?;
    let caps = is_all_caps(&word.text) && word.text.chars().count() >= 2;
    // An entry stands aside for a text of another language, for an
    // acronym in capitals and for a unit after a number.
    let applies = |e: &&Entry| {
        let stands_aside = (e.strict && lang != Some(e.lang))
            || (e.acronym && caps)
            || (e.unit && word.after_number);
        !stands_aside
    };
    // The message's language gives the suggestion when several lists agree.
    entries
        .iter()
        .filter(applies)
        .find(|e| Some(e.lang) == lang)
        .or_else(|| entries.iter().find(applies))
}

/// `hati2` → `hati-hati`, `mudah2an` → `mudah-mudahan`: a reduplication
/// written with 2, for Indonesian texts (and texts of no known language).
fn reduplication(word: &Word, lang: Option<Language>) -> Option<String> {
    if matches!(lang, Some(Language::En | Language::Ru)) || is_all_caps(&word.text) {
        return None;
    }
    let (base, suffix) = word.lower.split_once('2')?;
    let plain = |s: &str| s.chars().all(|c| c.is_ascii_lowercase());
    let suffixes = ["", "an", "nya", "in", "kan"];
    (base.len() >= 3 && plain(base) && suffixes.contains(&suffix))
        .then(|| format!("{base}-{base}{suffix}"))
}

/// A letter typed three times or more in a row (`gratisss`, `Sooo`),
/// except in a word of one letter (`zzz`) or a Roman numeral (`VIII`).
fn elongated(word: &str) -> bool {
    let chars: Vec<char> = word.chars().collect();
    let roman = chars.iter().all(|c| "IVXLCDM".contains(*c));
    let distinct: HashSet<char> = chars.iter().flat_map(|c| c.to_lowercase()).collect();
    !roman
        && distinct.len() >= 2
        && chars
            .windows(3)
            .any(|w| w[0].is_alphabetic() && w[0] == w[1] && w[1] == w[2])
}

fn abbreviations(words: &[Word], lang: Option<Language>, lists: &Lists) -> Option<Finding> {
    let hits = words
        .iter()
        .filter_map(|w| {
            let note = if let Some(e) = listed(w, lang, lists) {
                format!("{} → {}", w.text, e.standard)
            } else if let Some(standard) = reduplication(w, lang) {
                format!("{} → {standard}", w.text)
            } else if elongated(&w.text) {
                format!("{} (one letter, not a run)", w.text)
            } else {
                return None;
            };
            Some((w, note))
        })
        .collect();
    finding(
        FindingCode::Abbreviation,
        hits,
        "write words in full and in standard spelling",
    )
}

/// The letter a digit stands for in a word (the same games as the keyword
/// respeller of `understand.rs`: 0→o, 1→i or l, 3→e, 4→a, 5→s, 7→t).
fn digit_letter(c: char, one: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' => one,
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        _ => return None,
    })
}

/// `segment` (letters and digits) with its digits read as letters, lower
/// case; `None` if a digit stands for no letter.
fn read_digits(segment: &str, one: char) -> Option<String> {
    segment
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_digit() {
                digit_letter(c, one)
            } else {
                Some(c)
            }
        })
        .collect()
}

/// Whether a reading looks like a word rather than a code: a vowel in every
/// four letters, no four consonants in a row.
fn pronounceable(reading: &str) -> bool {
    let vowel = |c: char| "aeiouy".contains(c);
    let letters: Vec<char> = reading.chars().collect();
    let vowels = letters.iter().filter(|c| vowel(**c)).count();
    let mut run = 0;
    for &c in &letters {
        run = if vowel(c) { 0 } else { run + 1 };
        if run >= 4 {
            return false;
        }
    }
    vowels * 4 >= letters.len()
}

/// The word a segment spells with digits for letters, if it is a digit game.
fn digit_game(segment: &str, lists: &Lists) -> Option<String> {
    let chars: Vec<char> = segment.chars().collect();
    let has_digit = chars.iter().any(char::is_ascii_digit);
    if !has_digit || !chars.iter().any(|c| c.is_alphabetic()) {
        return None;
    }
    let caps = is_all_caps(segment);
    if let Some(word) = lists.digits.get(&segment.to_lowercase()) {
        // In capitals, two characters are a model or a paper size (B4, S7).
        return (!(caps && chars.len() <= 2)).then(|| word.to_string());
    }
    // A digit game spells a word of the vocabulary, in any case (D1SK0N) ...
    let readings: Vec<String> = ['i', 'l']
        .into_iter()
        .filter_map(|one| read_digits(segment, one))
        .collect();
    if let Some(r) = readings
        .iter()
        .find(|r| r.chars().count() >= 4 && lists.vocabulary.contains(r.as_str()))
    {
        return Some(r.clone());
    }
    // ... or puts a digit between two small letters and reads like a word
    // (s3m4ng4t, h3llo): codes are written in capitals (B1G1, IP5GHEMAT),
    // model numbers end in their digits (iPhone15), and a random code reads
    // as no word (x7k3p).
    let between_lower = chars
        .windows(3)
        .any(|w| w[0].is_lowercase() && w[2].is_lowercase() && digit_letter(w[1], 'i').is_some());
    let reading = readings.first()?;
    (chars.len() >= 4 && between_lower && pronounceable(reading)).then(|| reading.clone())
}

fn digit_spelling(words: &[Word], lists: &Lists) -> Option<Finding> {
    let hits = words
        .iter()
        .filter_map(|w| {
            let spelt: Vec<String> = alnum_words(&w.text)
                .filter_map(|s| digit_game(s, lists))
                .collect();
            (!spelt.is_empty()).then(|| (w, format!("{} → {}", w.text, spelt.join(" "))))
        })
        .collect();
    finding(
        FindingCode::DigitSpelling,
        hits,
        "digits used for letters; write the word",
    )
}

/// Share of capitals (over the letters of the counted words) from which a
/// text shouts, and the fewest capitals that can shout.
const SHOUTING_RATIO: f64 = 0.6;
const SHOUTING_MIN_CAPITALS: usize = 12;

/// Whether a word in capitals is allowed to be: a keyword (`UNSUBSCRIBE`,
/// `СТОП`) or an acronym of up to four letters (`SMS`, `WIB`, `BPJS`).
fn may_be_capitals(word: &Word) -> bool {
    let letters = word.text.chars().filter(|c| c.is_alphabetic()).count();
    let upper = word.text.to_uppercase();
    letters <= 4 || KEYWORDS.iter().any(|(k, _, _)| *k == upper)
}

fn shouting(words: &[Word]) -> Option<Finding> {
    let (mut upper, mut cased) = (0usize, 0usize);
    let mut shouted: Vec<(&Word, String)> = Vec::new();
    for w in words {
        // Codes (HEMAT20) and model numbers are written as they must be.
        if w.text.chars().any(|c| c.is_ascii_digit())
            || (is_all_caps(&w.text) && may_be_capitals(w))
        {
            continue;
        }
        upper += w.text.chars().filter(|c| c.is_uppercase()).count();
        cased += w
            .text
            .chars()
            .filter(|c| c.is_uppercase() || c.is_lowercase())
            .count();
        let small = w.text.chars().filter(|c| c.is_lowercase()).count();
        if w.text.chars().filter(|c| c.is_uppercase()).count() > small {
            shouted.push((w, w.text.clone()));
        }
    }
    if upper < SHOUTING_MIN_CAPITALS || (upper as f64) < SHOUTING_RATIO * cased as f64 {
        return None;
    }
    let mut f = finding(FindingCode::Shouting, shouted, "")?;
    f.message = format!(
        "{}% of the letters are capitals: write in sentence case (capitals are fine for the brand, keywords and acronyms)",
        upper * 100 / cased.max(1)
    );
    Some(f)
}

fn exclamations(text: &str) -> Option<Finding> {
    let mut runs: Vec<(usize, String)> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let qualifies = |run: &str| {
        let bangs = run.chars().filter(|c| matches!(c, '!' | '！')).count();
        bangs >= 2 || (bangs >= 1 && run.chars().count() >= 3)
    };
    for (i, c) in text.chars().chain(std::iter::once(' ')).enumerate() {
        if matches!(c, '!' | '?' | '！' | '？') {
            current.get_or_insert_with(|| (i, String::new())).1.push(c);
        } else if let Some((start, run)) = current.take() {
            if qualifies(&run) {
                runs.push((start, run));
            }
        }
    }
    let (position, _) = runs.first()?.clone();
    let mut words: Vec<String> = Vec::new();
    for (_, run) in runs {
        if !words.contains(&run) {
            words.push(run);
        }
    }
    let message = format!(
        "repeated exclamation marks ({}): one is enough",
        words.join(" ")
    );
    Some(Finding {
        code: FindingCode::Exclamations,
        words,
        position,
        message,
    })
}

fn link_shorteners(tokens: &[Token], lists: &Lists) -> Option<Finding> {
    let hits: Vec<&Token> = tokens
        .iter()
        .filter(|t| {
            t.link
                .as_deref()
                .is_some_and(|h| lists.shorteners.contains(h))
        })
        .collect();
    // The link as written, without the punctuation around it.
    let trim = |t: &Token| -> (usize, String) {
        let core = t.raw.trim_start_matches(['(', '[', '<', '"', '\'', '«']);
        let lead = t.raw.len() - core.len();
        let core = core.trim_end_matches(|c: char| ".,;:!?)]>\"'»".contains(c));
        (t.position + t.raw[..lead].chars().count(), core.to_string())
    };
    let (position, _) = trim(hits.first()?);
    let mut words: Vec<String> = Vec::new();
    for t in &hits {
        let (_, link) = trim(t);
        if !words.contains(&link) {
            words.push(link);
        }
    }
    let message = format!(
        "carriers filter messages with link shorteners ({}): give the full address on your own domain",
        words.join(", ")
    );
    Some(Finding {
        code: FindingCode::LinkShortener,
        words,
        position,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(text: &str, lang: Option<Language>) -> Vec<FindingCode> {
        check(text, lang, "Toko Maju", StyleKind::Marketing)
            .iter()
            .map(|f| f.code)
            .collect()
    }

    fn word(text: &str, after_number: bool) -> Word {
        Word {
            text: text.to_string(),
            lower: text.to_lowercase(),
            position: 0,
            after_number,
        }
    }

    #[test]
    fn every_list_row_is_well_formed() {
        for (name, tsv, columns) in [
            ("style_id", STYLE_ID, 2..=3),
            ("style_en", STYLE_EN, 2..=3),
            ("style_ru", STYLE_RU, 2..=3),
            ("style_digits", STYLE_DIGITS, 2..=2),
            ("style_links", STYLE_LINKS, 2..=2),
            ("style_words", STYLE_WORDS, 1..=1),
        ] {
            for row in rows(tsv) {
                assert!(columns.contains(&row.len()), "{name}: {row:?}");
                assert!(row.iter().all(|c| !c.trim().is_empty()), "{name}: {row:?}");
                assert_eq!(row[0], row[0].to_lowercase(), "{name}: lower case");
                if let Some(flags) = row.get(2).filter(|_| row.len() == 3) {
                    for f in flags.split(',') {
                        assert!(["acronym", "strict", "unit"].contains(&f), "{name}: {f}");
                    }
                }
            }
        }
        let l = lists();
        assert!(l.abbreviations.len() > 500, "{}", l.abbreviations.len());
        assert!(l.shorteners.contains("s.id") && l.shorteners.contains("bit.ly"));
    }

    #[test]
    fn no_suggestion_is_itself_an_abbreviation_of_its_language() {
        let l = lists();
        for (form, entries) in &l.abbreviations {
            for e in entries {
                for w in e.standard.split(' ') {
                    let again = l.abbreviations.get(&w.to_lowercase());
                    assert!(
                        again.is_none_or(|es| es.iter().all(|x| x.lang != e.lang)),
                        "{form} -> {}",
                        e.standard
                    );
                }
            }
        }
    }

    #[test]
    fn a_strict_entry_needs_its_language_and_an_acronym_entry_is_skipped_in_capitals() {
        let l = lists();
        assert!(listed(&word("org", false), Some(Language::Id), l).is_some());
        assert!(listed(&word("org", false), Some(Language::En), l).is_none());
        assert!(listed(&word("org", false), None, l).is_none());
        assert!(listed(&word("smp", false), Some(Language::Id), l).is_some());
        assert!(listed(&word("SMP", false), Some(Language::Id), l).is_none());
        // A single capital is a word at the start of a sentence, not an acronym.
        assert!(listed(&word("U", false), Some(Language::En), l).is_some());
        assert!(listed(&word("g", false), Some(Language::Id), l).is_some());
        assert!(listed(&word("g", true), Some(Language::Id), l).is_none());
    }

    #[test]
    fn the_language_of_the_message_gives_the_suggestion() {
        let l = lists();
        let thx = word("thx", false);
        assert_eq!(
            listed(&thx, Some(Language::En), l).unwrap().standard,
            "thanks"
        );
        assert_eq!(
            listed(&thx, Some(Language::Id), l).map(|e| e.standard),
            Some("thanks"),
            "thx is English only"
        );
        let tq = word("tq", false);
        assert_eq!(
            listed(&tq, Some(Language::Id), l).unwrap().standard,
            "terima kasih"
        );
    }

    #[test]
    fn links_are_recognised_with_or_without_scheme() {
        for (raw, host) in [
            ("https://bit.ly/abc", Some("bit.ly")),
            ("bit.ly/abc,", Some("bit.ly")),
            ("(www.Toko-Maju.co.id)", Some("toko-maju.co.id")),
            ("tokomaju.id.", Some("tokomaju.id")),
            ("HTTPS://TINYURL.COM/FZ", Some("tinyurl.com")),
            ("s.id/promo", Some("s.id")),
        ] {
            assert_eq!(link_host(raw).as_deref(), host, "{raw}");
        }
        for raw in [
            "Rp50.000", "s.d.", "p.a.", "12.12", "2.0", "т.е.", "No.10", "dll.",
        ] {
            assert_eq!(link_host(raw), None, "{raw}");
        }
    }

    #[test]
    fn variables_are_blanked_char_for_char() {
        let m = mask_variables("Hé {vars.nama}, {{x}} {brand}");
        assert_eq!(
            m.text.chars().count(),
            "Hé {vars.nama}, {{x}} {brand}".chars().count()
        );
        assert_eq!(m.text.trim_end(), "Hé            ,   x");
        assert!(m.has_brand_variable);
    }

    #[test]
    fn digit_games_are_told_from_codes_and_models() {
        let l = lists();
        for (segment, reading) in [
            ("p4g1", "pagi"),
            ("s3m4ng4t", "semangat"),
            ("h3llo", "hello"),
            ("D1SK0N", "diskon"),
            ("PR0M0", "promo"),
            ("gr8", "great"),
            ("2day", "today"),
        ] {
            assert_eq!(
                digit_game(segment, l).as_deref(),
                Some(reading),
                "{segment}"
            );
        }
        for segment in [
            "4G",
            "5G",
            "B2B",
            "A4",
            "B4",
            "mp3",
            "iPhone15",
            "S24",
            "10x",
            "HEMAT20",
            "B1G1",
            "IP5GHEMAT",
            "Rp50",
            "RTX4090",
            "1x24",
            "2in1",
            "x7k3p",
            "Watch6",
            "65W",
        ] {
            assert_eq!(digit_game(segment, l), None, "{segment}");
        }
    }

    #[test]
    fn shouting_needs_mostly_capitals_beyond_brand_keywords_and_acronyms() {
        assert!(codes(
            "TOKO MAJU: DISKON BESAR HANYA HARI INI UNTUK SEMUA PRODUK",
            None
        )
        .contains(&FindingCode::Shouting));
        assert!(
            !codes("Toko Maju: balas UNSUBSCRIBE atau STOPALL ke 3344.", None)
                .contains(&FindingCode::Shouting)
        );
        assert!(!codes("TOKO MAJU: SMS OTP PIN ATM BPJS", None).contains(&FindingCode::Shouting));
    }

    #[test]
    fn elongation_spares_numerals_and_one_letter_words() {
        assert!(elongated("gratisss") && elongated("Sooo") && elongated("оооочень"));
        assert!(!elongated("VIII") && !elongated("zzz") && !elongated("hello"));
    }

    #[test]
    fn reduplication_with_two_is_indonesian() {
        assert_eq!(
            reduplication(&word("hati2", false), Some(Language::Id)).as_deref(),
            Some("hati-hati")
        );
        assert_eq!(
            reduplication(&word("mudah2an", false), None).as_deref(),
            Some("mudah-mudahan")
        );
        assert_eq!(
            reduplication(&word("note2", false), Some(Language::En)),
            None
        );
        assert_eq!(reduplication(&word("MP2", false), None), None);
    }

    #[test]
    fn guessing_the_language_reads_function_words_and_script() {
        let words =
            |t: &str| -> Vec<Word> { tokens(t).into_iter().filter_map(|t| t.word).collect() };
        let l = lists();
        assert_eq!(
            guess_language(&words("Diskon untuk semua produk"), l),
            Some(Language::Id)
        );
        assert_eq!(
            guess_language(&words("Get 20% off your order"), l),
            Some(Language::En)
        );
        assert_eq!(
            guess_language(&words("Скидка на все"), l),
            Some(Language::Ru)
        );
        assert_eq!(guess_language(&words("PROMO 12.12"), l), None);
    }
}
