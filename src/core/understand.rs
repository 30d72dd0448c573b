//! Understanding beyond the exact keyword tables (issue #14): the forms of a
//! message that the classifier tries when its words, as normalised, match
//! nothing.
//!
//! - **Respelling** ([`Respeller`]), for keyword look-up only: a word with a
//!   run of a repeated letter (`STOOOP`), digits typed for letters (`ST0P`,
//!   `5TOP`: 0→O, 1→I or L, 3→E, 4→A, 5→S, 7→T) or a run of single letters
//!   (`S T O P`, `S.T.O.P`) becomes an opt-out or help keyword when its
//!   collapsed form is one — and only then. Opt-in and confirmation keywords
//!   are never respelled: consent stays strict.
//! - **Colloquial Indonesian** (`GAK` → `TIDAK`, `GAUSAH` → `TIDAK USAH`,
//!   `JGN` → `JANGAN`), word by word, from a curated lexicon compiled in
//!   (`data/indo_lexicon.tsv`, MIT, see `data/LICENSE-indo-collex`).
//! - **Word classes** ([`WordClasses`]) for the intent grammar of
//!   [`super::classify`]: Latin words by exact look-up, then with Indonesian
//!   affixes stripped ([`id_base`]: `KIRIMI`, `MENGIRIM`, `DIKIRIM` →
//!   `KIRIM`); Cyrillic words by their Snowball stem (`ОТКАЗЫВАЮСЬ` →
//!   `отказыва`, matched by the root `отказ`).
//!
//! Everything here is a pure function of the text and of tables built once
//! in [`super::Classifier::new`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rust_stemmers::{Algorithm, Stemmer};

use super::keywords::{class, Language, RU_EXACT_STEMS, RU_STEMS, WORD_CLASSES};

/// FNV-1a: the tables here are keyed by short words and looked up several
/// times per unrecognised message, where SipHash's setup dominates. They are
/// built from constants, not from input, so flooding is no concern.
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// The curated colloquial → standard Indonesian lexicon.
const INDO_LEXICON: &str = include_str!("data/indo_lexicon.tsv");

/// The letter a digit stands for inside a word (`1` is tried as `I`, then as
/// `L`).
fn digit_letter(c: char, one: char) -> Option<char> {
    Some(match c {
        '0' => 'O',
        '1' => one,
        '3' => 'E',
        '4' => 'A',
        '5' => 'S',
        '7' => 'T',
        _ => return None,
    })
}

/// Writes to `out` the look-up key of `word`: digits mapped to letters
/// (`one` for `1`) and every run of one repeated letter collapsed to one.
/// `false` if a digit has no letter.
fn spelling_key(word: &str, one: char, out: &mut String) -> bool {
    out.clear();
    let mut last = None;
    for c in word.chars() {
        let c = if c.is_ascii_digit() {
            match digit_letter(c, one) {
                Some(l) => l,
                None => return false,
            }
        } else {
            c
        };
        if last != Some(c) {
            out.push(c);
        }
        last = Some(c);
    }
    true
}

/// Whether `word` plays a letter game: a repeated letter, or digits among
/// letters.
fn plays_letters(word: &str) -> bool {
    if word.is_ascii() {
        // Nearly every word: the same test in one pass over bytes.
        let (mut digit, mut letter, mut repeat, mut last) = (false, false, false, 0u8);
        for &b in word.as_bytes() {
            if b.is_ascii_digit() {
                digit = true;
            } else if b.is_ascii_alphabetic() {
                letter = true;
                repeat |= b == last;
            }
            last = b;
        }
        return letter && (digit || repeat);
    }
    let (mut digit, mut letter, mut repeat) = (false, false, false);
    let mut last = None;
    for c in word.chars() {
        digit |= c.is_ascii_digit();
        letter |= c.is_alphabetic();
        repeat |= last == Some(c) && c.is_alphabetic();
        last = Some(c);
    }
    letter && (digit || repeat)
}

/// Respells letter games into keywords and colloquial Indonesian into
/// standard words.
#[derive(Debug, Clone)]
pub(crate) struct Respeller {
    /// Look-up key (see [`spelling_key`]) → opt-out or help keyword.
    spellings: Map<String, String>,
    /// Upper-case colloquial word → standard word(s), chains resolved.
    lexicon: Map<String, String>,
}

/// What [`Respeller::respell`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Respelled {
    /// A letter game became a keyword.
    pub letters: bool,
    /// A colloquial Indonesian word became a standard one.
    pub colloquial: bool,
}

impl Respelled {
    pub fn any(self) -> bool {
        self.letters || self.colloquial
    }
}

impl Respeller {
    /// `keywords`: the single-word opt-out and help keywords (normalised).
    pub fn new<'a>(keywords: impl IntoIterator<Item = &'a str>) -> Respeller {
        let mut spellings = Map::default();
        let mut key = String::new();
        for k in keywords {
            if spelling_key(k, 'I', &mut key) {
                spellings
                    .entry(key.clone())
                    .or_insert_with(|| k.to_string());
            }
        }
        let mut raw: HashMap<String, String> = HashMap::new();
        for line in INDO_LEXICON.lines() {
            if line.starts_with('#') {
                continue;
            }
            if let Some((informal, formal)) = line.split_once('\t') {
                raw.insert(informal.to_uppercase(), formal.to_uppercase());
            }
        }
        // Resolve chains (`NGAK` → `NGGAK` → `TIDAK`) so that one pass is
        // final and respelling stays idempotent.
        let resolve = |formal: &str| -> String {
            let mut words: Vec<String> = formal.split(' ').map(str::to_string).collect();
            for _ in 0..4 {
                let next: Vec<String> = words
                    .iter()
                    .flat_map(|w| {
                        raw.get(w)
                            .map_or(w.as_str(), String::as_str)
                            .split(' ')
                            .map(str::to_string)
                    })
                    .collect();
                if next == words {
                    break;
                }
                words = next;
            }
            words.join(" ")
        };
        let lexicon = raw
            .iter()
            .map(|(k, v)| (k.clone(), resolve(v)))
            .filter(|(k, v)| k != v)
            .collect();
        Respeller { spellings, lexicon }
    }

    /// Whether [`Respeller::respell`] may change `tokens`: a cheap test
    /// without allocating, so that most texts skip respelling.
    pub fn may_respell(&self, tokens: &[&str], keep: impl Fn(&str) -> bool) -> bool {
        let single = |t: &&str| t.chars().nth(1).is_none();
        tokens.windows(2).any(|w| single(&w[0]) && single(&w[1]))
            || tokens
                .iter()
                .any(|t| (self.lexicon.contains_key(*t) || plays_letters(t)) && !keep(t))
    }

    /// The keyword `word` spells by a letter game, if any.
    fn spelled(&self, word: &str, key: &mut String) -> Option<&str> {
        ['I', 'L'].into_iter().find_map(|one| {
            if spelling_key(word, one, key) {
                self.spellings.get(key.as_str()).map(String::as_str)
            } else {
                None
            }
        })
    }

    /// Writes the respelled form of `tokens` to `out` (words separated by
    /// single spaces). `keep` says which words are keywords already and stay
    /// as they are.
    pub fn respell(
        &self,
        tokens: &[&str],
        keep: impl Fn(&str) -> bool,
        out: &mut String,
    ) -> Respelled {
        let mut done = Respelled::default();
        let mut key = String::new();
        let mut joined = String::new();
        let push = |out: &mut String, w: &str| {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(w);
        };
        let single = |t: &str| t.chars().nth(1).is_none();
        let mut i = 0;
        while i < tokens.len() {
            // A run of single letters (`S T O P`) that spells a keyword.
            let run = tokens[i..].iter().take_while(|t| single(t)).count();
            if run >= 2 {
                joined.clear();
                tokens[i..i + run].iter().for_each(|t| joined.push_str(t));
                if let Some(k) = self.spelled(&joined, &mut key) {
                    push(out, k);
                    done.letters = true;
                    i += run;
                    continue;
                }
            }
            let t = tokens[i];
            i += 1;
            if keep(t) {
                push(out, t);
            } else if let Some(standard) = self.lexicon.get(t) {
                push(out, standard);
                done.colloquial = true;
            } else if let Some(k) = plays_letters(t)
                .then(|| self.spelled(t, &mut key))
                .flatten()
            {
                push(out, k);
                done.letters = true;
            } else {
                push(out, t);
            }
        }
        done
    }
}

/// The base of an Indonesian word once affixes are stripped, if that base is
/// `known`: suffixes `-NYA`, `-KAN`, `-IN` (colloquial `-kan`), `-I`, `-KU`,
/// `-MU`, a trailing `2` (reduplication, `KIRIM2`), prefixes `DI-`, `ME-`,
/// `MEM-`, `MEN-`, `MENG-`, `MENY-` and colloquial `NG-`, with the initial
/// letter that the nasal prefix swallowed restored (`MENGIRIM` → `KIRIM`,
/// `MENERIMA` → `TERIMA`). `None` for a word without an affix: callers
/// look the word itself up first.
pub(crate) fn id_base<'a>(word: &'a str, known: impl Fn(&str) -> bool) -> Option<Cow<'a, str>> {
    const SUFFIXES: [&str; 7] = ["", "NYA", "KAN", "IN", "I", "KU", "MU"];
    // (prefix, letter the prefix replaced before a vowel)
    const PREFIXES: [(&str, Option<char>); 8] = [
        ("", None),
        ("DI", None),
        ("MENG", Some('K')),
        ("MENY", Some('S')),
        ("MEN", Some('T')),
        ("MEM", Some('P')),
        ("ME", None),
        ("NG", Some('K')),
    ];
    let word = match word.strip_suffix('2') {
        Some(single) if single.len() >= 3 && known(single) => return Some(Cow::Borrowed(single)),
        Some(single) => single,
        None => word,
    };
    // Most words have no affix at all: no look-up for them.
    let affixed = SUFFIXES[1..].iter().any(|s| word.ends_with(s))
        || PREFIXES[1..].iter().any(|(p, _)| word.starts_with(p));
    if !affixed {
        return None;
    }
    for suffix in SUFFIXES {
        let Some(stem) = word.strip_suffix(suffix) else {
            continue;
        };
        for (prefix, swallowed) in PREFIXES {
            let Some(base) = stem.strip_prefix(prefix) else {
                continue;
            };
            // The word as it is (after a `2`) is the caller's own look-up.
            if base.len() < 3 || (suffix.is_empty() && prefix.is_empty()) {
                continue;
            }
            if known(base) {
                return Some(Cow::Borrowed(base));
            }
            let vowel = base.starts_with(['A', 'E', 'I', 'O', 'U']);
            if let (Some(letter), true) = (swallowed, vowel) {
                let restored = format!("{letter}{base}");
                if known(&restored) {
                    return Some(Cow::Owned(restored));
                }
            }
        }
    }
    None
}

/// The grammar's view of one word: a set of [`class`] bits and the
/// language the word shows (`None`: Indonesian or English alike).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WordClass {
    pub bits: u16,
    pub lang: Option<Language>,
}

impl WordClass {
    pub fn has(self, bits: u16) -> bool {
        self.bits & bits != 0
    }
}

/// Word classes of normalised words (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct WordClasses {
    exact: Map<&'static str, WordClass>,
}

fn is_cyrillic_word(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| matches!(c, '\u{0400}'..='\u{04FF}'))
}

impl WordClasses {
    pub fn new() -> WordClasses {
        let mut exact: Map<&'static str, WordClass> = Map::default();
        for (word, bits, lang) in WORD_CLASSES {
            let e = exact.entry(word).or_default();
            e.bits |= bits;
            e.lang = e.lang.or(*lang);
        }
        WordClasses { exact }
    }

    /// The class of a word by exact look-up only (cheap: function words,
    /// question words, pronouns).
    pub fn exact(&self, word: &str) -> WordClass {
        self.exact.get(word).copied().unwrap_or_default()
    }

    /// The class of every word of `tokens`, into `out` (as long as
    /// `tokens`); `lower` is a reused buffer.
    pub fn classify(&self, tokens: &[&str], lower: &mut String, out: &mut [WordClass]) {
        let mut stemmer: Option<Stemmer> = None;
        let classes = tokens.iter().map(|t| {
            let found = self.exact(t);
            if found.bits != 0 {
                return found;
            }
            if is_cyrillic_word(t) {
                return self.russian(t, lower, &mut stemmer);
            }
            let mut c = id_base(t, |b| self.exact.contains_key(b))
                .map(|b| self.exact(&b))
                .unwrap_or_default();
            if t.len() > 5 && t.ends_with("NYA") {
                // `PROMONYA`, `DISKONNYA`: "the promo", a third person.
                c.bits |= class::THIRD;
                c.lang = Some(Language::Id);
            }
            c
        });
        for (slot, c) in out.iter_mut().zip(classes) {
            *slot = c;
        }
    }

    /// The class of a Cyrillic word by its Snowball stem: a root of
    /// [`RU_STEMS`] the stem starts with, or a stem of [`RU_EXACT_STEMS`].
    fn russian(&self, word: &str, lower: &mut String, stemmer: &mut Option<Stemmer>) -> WordClass {
        // The algorithm works on lower case, with ё as е.
        lower.clear();
        lower.extend(word.chars().flat_map(char::to_lowercase).map(|c| {
            if c == 'ё' {
                'е'
            } else {
                c
            }
        }));
        let ru = |bits| WordClass {
            bits,
            lang: Some(Language::Ru),
        };
        // A stem is a prefix of its word: a word that starts with no root
        // needs no stemming (most words of most texts).
        let candidate = RU_STEMS
            .iter()
            .chain(RU_EXACT_STEMS)
            .any(|(root, _)| lower.starts_with(root));
        if !candidate {
            return ru(0);
        }
        let stemmer = stemmer.get_or_insert_with(|| Stemmer::create(Algorithm::Russian));
        let stem = stemmer.stem(lower);
        let prefix = RU_STEMS.iter().filter(|(root, _)| stem.starts_with(root));
        let exact = RU_EXACT_STEMS.iter().filter(|(s, _)| *s == &*stem);
        ru(prefix.chain(exact).fold(0, |acc, (_, bits)| acc | bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn respeller() -> Respeller {
        Respeller::new(["STOP", "UNSUBSCRIBE", "BERHENTI", "HELP", "СТОП", "STOPALL"])
    }

    fn respell(text: &str) -> (String, Respelled) {
        let r = respeller();
        let tokens: Vec<&str> = text.split(' ').collect();
        let mut out = String::new();
        let done = r.respell(&tokens, |t| t == "STOP", &mut out);
        (out, done)
    }

    #[test]
    fn letter_games_become_keywords_only_when_they_spell_one() {
        assert_eq!(respell("STOOOP").0, "STOP");
        assert_eq!(respell("5T0P").0, "STOP");
        assert_eq!(respell("B3RH3NT1").0, "BERHENTI");
        assert_eq!(respell("S T O P PLS").0, "STOP PLS");
        assert_eq!(respell("С Т О О П").0, "СТОП");
        assert_eq!(respell("STOPALLL").0, "STOPALL");
        assert!(respell("STOOOP").1.letters);
        // Not keywords: left alone.
        assert_eq!(respell("GOOD B2B A B C").0, "GOOD B2B A B C");
        assert_eq!(respell("STAAART").0, "STAAART");
    }

    #[test]
    fn the_lexicon_is_curated_and_resolved_to_standard_words() {
        let r = respeller();
        assert!(r.lexicon.len() > 100);
        for (informal, standard) in &r.lexicon {
            for word in standard.split(' ') {
                assert!(!r.lexicon.contains_key(word), "{informal} -> {standard}");
            }
        }
        // Dropped: English words the source translates, ambiguous short forms.
        for dropped in ["ME", "PLS", "WANTS", "KM", "OK"] {
            assert!(!r.lexicon.contains_key(dropped), "{dropped}");
        }
    }

    #[test]
    fn only_texts_that_may_change_are_respelled() {
        let r = respeller();
        let keep = |t: &str| t == "STOP";
        assert!(!r.may_respell(&["HALO", "INI", "SIAPA"], keep));
        assert!(!r.may_respell(&["STOP", "I"], keep));
        for text in ["GAK MAU", "STOOOP", "5TOP", "S T O P"] {
            let tokens: Vec<&str> = text.split(' ').collect();
            assert!(r.may_respell(&tokens, keep), "{text}");
        }
    }

    #[test]
    fn colloquial_indonesian_becomes_standard() {
        let (out, done) = respell("GAUSAH KIRIM LG");
        assert_eq!(out, "TIDAK USAH KIRIM LAGI");
        assert!(done.colloquial && !done.letters);
        assert_eq!(respell("UDH GA MAU").0, "SUDAH TIDAK MAU");
        // A chain in the lexicon is resolved in one pass.
        assert_eq!(respell("NGAK").0, "TIDAK");
    }

    #[test]
    fn indonesian_affixes_are_stripped_to_a_known_base() {
        let known = |w: &str| ["KIRIM", "TERIMA", "HAPUS", "BERHENTI", "NOMOR"].contains(&w);
        for (word, base) in [
            ("KIRIMI", "KIRIM"),
            ("MENGIRIM", "KIRIM"),
            ("DIKIRIM", "KIRIM"),
            ("DIKIRIMKAN", "KIRIM"),
            ("KIRIMIN", "KIRIM"),
            ("KIRIM2", "KIRIM"),
            ("MENERIMA", "TERIMA"),
            ("DIHAPUS", "HAPUS"),
            ("MENGHAPUS", "HAPUS"),
            ("BERHENTIKAN", "BERHENTI"),
            ("NOMORKU", "NOMOR"),
            ("NOMORNYA", "NOMOR"),
        ] {
            assert_eq!(id_base(word, known).as_deref(), Some(base), "{word}");
        }
        // The word as it is: the caller's own look-up, not an affix.
        assert_eq!(id_base("KIRIM", known), None);
        assert_eq!(id_base("MAKAN", known), None);
        assert_eq!(id_base("DI", known), None);
    }

    #[test]
    fn russian_words_are_classed_by_their_stem() {
        let wc = WordClasses::new();
        let mut buf = String::new();
        let mut got = [WordClass::default(); 5];
        wc.classify(
            &["ОТКАЗЫВАЮСЬ", "ОТМЕНИТЕ", "ПОДПИСКУ", "ПОМОГИТЕ", "ОТМЕНА"],
            &mut buf,
            &mut got,
        );
        assert!(got[0].has(class::STOP_STRONG));
        assert!(got[1].has(class::STOP));
        assert!(got[2].has(class::OBJ));
        assert!(got[3].has(class::HELP));
        // The stemmer cuts `отмена` to `отм`, inside the root `отмен`.
        assert!(got[4].has(class::STOP));
        // ... but `отм` is matched whole: `отметьте` ("mark") is no stop.
        wc.classify(&["ОТМЕТЬТЕ"], &mut buf, &mut got[..1]);
        assert!(!got[0].has(class::STOP));
        assert!(got.iter().all(|c| c.lang == Some(Language::Ru)));
    }
}
