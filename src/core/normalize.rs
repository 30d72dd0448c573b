//! Text normalisation: turns whatever a phone sent into a canonical string of
//! upper-case words separated by single spaces, so that keyword tables can be
//! compared with plain string equality.
//!
//! ```
//! use keyward::core::normalize;
//!
//! assert_eq!(normalize("  🛑 ｓｔｏｐ!!! 🛑 "), "STOP");
//! assert_eq!(normalize("CTOП"), "СТОП"); // Latin C, T, O folded to Cyrillic
//! assert_eq!(normalize("Don’t  text me."), "DONT TEXT ME");
//! ```
//!
//! Steps, in order:
//! 1. invisible characters (control characters other than whitespace, NUL,
//!    zero-width and other format characters, variation selectors) and
//!    apostrophes are removed — before composition, so that removing them
//!    cannot create a new composition on a second pass;
//! 2. Unicode NFKC (full-width forms and ligatures become plain letters),
//!    upper-casing, NFKC again (upper-casing may decompose);
//! 3. every run of characters that are not letters, digits or combining marks
//!    (punctuation, emoji, symbols, whitespace) becomes one space; the result
//!    is trimmed;
//! 4. a word that mixes Latin and Cyrillic letters is folded to one script
//!    using a look-alike table (see [`fold_lookalikes`]).
//!
//! The whole is idempotent: `normalize(&normalize(x)) == normalize(x)`.
//!
//! Nearly every SMS is ASCII or basic Cyrillic, with some punctuation and
//! emoji. For such texts the steps reduce to a per-character map and run in
//! one pass (see `simple_class`); other texts take the general path, which
//! the tests use as the reference for the fast one.

use std::borrow::Cow;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use super::keywords;

/// Normalises an inbound text for keyword matching. Never panics.
///
/// Apostrophes are removed, so `don't`, `don’t` and `dont` all become `DONT`.
pub fn normalize(text: &str) -> String {
    let mut out = normalize_once(text);
    if out.is_ascii() || is_fixed_point(&out) {
        // Upper-case ASCII words separated by single spaces are a fixed
        // point (e.g. "🛑 stop 🛑" → "STOP"), and so is nearly every other
        // output (see `is_fixed_point`): no second pass needed.
        return out;
    }
    // Rare Unicode corner cases (a combining mark that composes only with the
    // folded script, case mappings that decompose) can need a second pass;
    // iterate to a fixed point so that normalisation stays idempotent.
    for _ in 0..4 {
        let next = normalize_once(&out);
        if next == out {
            break;
        }
        out = next;
    }
    out
}

/// One pass of steps 1–4. Texts made only of characters of the fast path's
/// alphabet (see [`simple_class`]: ASCII, basic Cyrillic, full-width forms,
/// common punctuation and emoji — nearly every SMS) take a single-pass
/// per-character path; anything else takes the general path.
fn normalize_once(text: &str) -> String {
    normalize_simple(text).unwrap_or_else(|| normalize_once_general(text))
}

/// One pass of steps 1–4 for any text: the reference the fast path must
/// agree with.
fn normalize_once_general(text: &str) -> String {
    let composed = compose(text, text.is_ascii());
    let mut out = String::with_capacity(composed.len());
    let mut word = String::new();
    for c in composed.chars() {
        if is_word_char(c) {
            word.push(c);
        } else if !word.is_empty() {
            push_word(&mut out, &word);
            word.clear();
        }
    }
    if !word.is_empty() {
        push_word(&mut out, &word);
    }
    out
}

/// What one pass does to a character of the fast path's alphabet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Simple {
    /// A word character; the payload is what NFKC and upper-casing make of it.
    Word(char),
    /// Removed without breaking the word (invisible characters, apostrophes).
    Delete,
    /// Ends the current word (whitespace, punctuation, symbols, emoji).
    Break,
}

/// Classifies `c` for the fast path, or `None` when `c` needs the general
/// path.
///
/// The alphabet is chosen so that the general path's NFKC, upper-casing and
/// NFKC again act character by character: no character of it is a combining
/// mark or the second half of a canonical composition, so nothing composes
/// across characters, and each character maps on its own to one upper-case
/// word character or to non-word characters only. Invisible characters and
/// apostrophes are deleted first by both paths. The tests check every
/// character of the alphabet against the general path, that no composition
/// can involve one of them as its second half, and random strings over it.
fn simple_class(c: char) -> Option<Simple> {
    let shifted = |by: u32| char::from_u32(u32::from(c) - by).map(Simple::Word);
    match c {
        // The commonest separator, before the long tests below.
        ' ' => Some(Simple::Break),
        'A'..='Z' | '0'..='9' | '\u{0400}'..='\u{042F}' => Some(Simple::Word(c)),
        'a'..='z' => Some(Simple::Word(c.to_ascii_uppercase())),
        // Cyrillic lower case: а–я, then ѐ–џ.
        '\u{0430}'..='\u{044F}' => shifted(0x20),
        '\u{0450}'..='\u{045F}' => shifted(0x50),
        // Full-width digits and letters: NFKC gives the ASCII ones.
        '\u{FF10}'..='\u{FF19}' | '\u{FF21}'..='\u{FF3A}' => shifted(0xFEE0),
        '\u{FF41}'..='\u{FF5A}' => shifted(0xFEE0 + 0x20),
        _ if is_invisible(c) || is_apostrophe(c) => Some(Simple::Delete),
        _ if c.is_ascii() => Some(Simple::Break),
        '\u{00A0}'                      // no-break space (NFKC: space)
        | '\u{2000}'..='\u{200A}'       // spaces (NFKC: space)
        | '\u{2010}'..='\u{2016}'       // hyphens, dashes
        | '\u{2018}'..='\u{2027}'       // quotes, bullets, ellipsis
        | '\u{3000}'                    // ideographic space
        | '\u{FF01}'..='\u{FF5E}'       // other full-width ASCII: punctuation
        | '\u{2600}'..='\u{2775}'       // symbols, dingbats (not the numerals)
        | '\u{2794}'..='\u{27BF}'
        | '\u{1F300}'..='\u{1F64F}'     // pictographs, emoticons, skin tones
        | '\u{1F680}'..='\u{1F6FF}'     // transport and map symbols
        | '\u{1F900}'..='\u{1F9FF}' => Some(Simple::Break),
        _ => None,
    }
}

/// [`normalize_once`] for a text whose characters are all in the fast path's
/// alphabet, in one pass and one allocation; `None` at the first character
/// outside it.
fn normalize_simple(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    // Where the current word starts in `out`; `None` between words.
    let mut word: Option<usize> = None;
    let (mut latin, mut cyrillic) = (false, false);
    for c in text.chars() {
        match simple_class(c)? {
            Simple::Word(u) => {
                if word.is_none() {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    word = Some(out.len());
                    (latin, cyrillic) = (false, false);
                }
                latin |= u.is_ascii_alphabetic();
                cyrillic |= is_upper_cyrillic(u);
                out.push(u);
            }
            Simple::Delete => {}
            Simple::Break => {
                if let Some(start) = word.take() {
                    fold_last_word(&mut out, start, latin && cyrillic);
                }
            }
        }
    }
    if let Some(start) = word {
        fold_last_word(&mut out, start, latin && cyrillic);
    }
    Some(out)
}

fn is_upper_cyrillic(c: char) -> bool {
    matches!(c, '\u{0400}'..='\u{042F}')
}

/// Step 4 for the word at `out[start..]`. Only a word that mixes both
/// scripts can change, so the others skip [`fold_lookalikes`].
fn fold_last_word(out: &mut String, start: usize, mixed: bool) {
    if !mixed {
        return;
    }
    if let Cow::Owned(folded) = fold_lookalikes(&out[start..]) {
        out.truncate(start);
        out.push_str(&folded);
    }
}

/// Whether a pass over `out`, an output of [`normalize_once`], would return
/// it unchanged — decided without making the pass. True when every
/// character is an ASCII upper-case letter, a digit or a basic upper-case
/// Cyrillic letter (the fast path maps each to itself, and `out` has single
/// spaces and none at either end) and folding leaves every mixed-script word
/// as it is.
fn is_fixed_point(out: &str) -> bool {
    out.split(' ').all(|word| {
        let (mut latin, mut cyrillic) = (false, false);
        for c in word.chars() {
            match c {
                'A'..='Z' => latin = true,
                '0'..='9' => {}
                c if is_upper_cyrillic(c) => cyrillic = true,
                _ => return false,
            }
        }
        !(latin && cyrillic) || fold_lookalikes(word) == word
    })
}

/// Steps 1 and 2: invisible characters and apostrophes removed, NFKC,
/// upper case. `ascii` (only for ASCII text) skips NFKC, which is the
/// identity on ASCII — most texts are ASCII.
fn compose(text: &str, ascii: bool) -> String {
    let visible = text
        .chars()
        .filter(|&c| !is_invisible(c) && !is_apostrophe(c));
    if ascii {
        visible.map(|c| c.to_ascii_uppercase()).collect()
    } else {
        visible.nfkc().flat_map(char::to_uppercase).nfkc().collect()
    }
}

fn push_word(out: &mut String, word: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(&fold_lookalikes(word));
}

fn is_word_char(c: char) -> bool {
    (c.is_alphanumeric() || is_combining_mark(c)) && !is_invisible(c) && !is_apostrophe(c)
}

/// Characters that carry no visible content: they are deleted, not turned
/// into word breaks (`ST\u{200B}OP` is `STOP`).
fn is_invisible(c: char) -> bool {
    (c.is_control() && !c.is_whitespace())
        || matches!(c,
            '\u{00AD}'                      // soft hyphen
            | '\u{034F}'                    // combining grapheme joiner
            | '\u{061C}'                    // Arabic letter mark
            | '\u{0600}'..='\u{0605}'
            | '\u{06DD}' | '\u{070F}'
            | '\u{115F}' | '\u{1160}'       // Hangul fillers
            | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'       // Mongolian selectors, vowel separator
            | '\u{200B}'..='\u{200F}'       // zero-width space/joiners, LRM/RLM
            | '\u{202A}'..='\u{202E}'       // bidi embeddings
            | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, bidi isolates
            | '\u{3164}' | '\u{FFA0}'       // Hangul fillers
            | '\u{FE00}'..='\u{FE0F}'       // variation selectors
            | '\u{FEFF}'                    // BOM / zero-width no-break space
            | '\u{FFF0}'..='\u{FFFB}'       // interlinear annotations
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}') // tags, variation selectors supplement
}

fn is_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\'' | '`'
            | '\u{00B4}'
            | '\u{02BC}'
            | '\u{2018}'
            | '\u{2019}'
            | '\u{201B}'
            | '\u{2032}'
            | '\u{FF07}'
    )
}

/// Upper-case Latin letters and the Cyrillic letters that look the same.
const LOOKALIKES: [(char, char); 12] = [
    ('A', 'А'),
    ('B', 'В'),
    ('C', 'С'),
    ('E', 'Е'),
    ('H', 'Н'),
    ('K', 'К'),
    ('M', 'М'),
    ('O', 'О'),
    ('P', 'Р'),
    ('T', 'Т'),
    ('X', 'Х'),
    ('Y', 'У'),
];

fn latin_to_cyrillic(c: char) -> Option<char> {
    LOOKALIKES.iter().find(|(l, _)| *l == c).map(|(_, k)| *k)
}

fn cyrillic_to_latin(c: char) -> Option<char> {
    LOOKALIKES.iter().find(|(_, k)| *k == c).map(|(l, _)| *l)
}

fn is_latin(c: char) -> bool {
    c.is_ascii_alphabetic()
        || (matches!(c, '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}') && c.is_alphabetic())
}

fn is_cyrillic(c: char) -> bool {
    matches!(c, '\u{0400}'..='\u{052F}') && c.is_alphabetic()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Script {
    Latin,
    Cyrillic,
}

/// Folds a word that mixes Latin and Cyrillic letters into one script.
///
/// The script is decided by the letters that exist in only one script (`П`,
/// `Д`, `S`, `N`…), because look-alike letters (`C`/`С`, `O`/`О`) say nothing:
/// `CTOП` has one Cyrillic-only letter and no Latin-only one, so it is
/// Cyrillic (`СТОП`) even though three of its four letters were typed in
/// Latin. When both sides have as many script-only letters, the word is
/// folded to Latin. When every letter is a look-alike, the script that spells
/// a built-in keyword wins, then the script of the majority of letters, then
/// Latin. Words in one script are never changed (`CTOP` stays Latin).
///
/// Idempotent: folding never changes a script-only letter, so a second pass
/// makes the same choice.
pub fn fold_lookalikes(word: &str) -> Cow<'_, str> {
    let (mut latin, mut cyrillic, mut latin_only, mut cyrillic_only) = (0u32, 0u32, 0u32, 0u32);
    for c in word.chars() {
        if is_latin(c) {
            latin += 1;
            if latin_to_cyrillic(c).is_none() {
                latin_only += 1;
            }
        } else if is_cyrillic(c) {
            cyrillic += 1;
            if cyrillic_to_latin(c).is_none() {
                cyrillic_only += 1;
            }
        }
    }
    if latin == 0 || cyrillic == 0 {
        return Cow::Borrowed(word);
    }
    let target = if latin_only > cyrillic_only {
        Script::Latin
    } else if cyrillic_only > latin_only {
        Script::Cyrillic
    } else if latin_only > 0 {
        Script::Latin
    } else {
        let as_latin = to_script(word, Script::Latin);
        let as_cyrillic = to_script(word, Script::Cyrillic);
        match (
            keywords::is_builtin_token(&as_latin),
            keywords::is_builtin_token(&as_cyrillic),
        ) {
            (true, false) => Script::Latin,
            (false, true) => Script::Cyrillic,
            _ if cyrillic > latin => Script::Cyrillic,
            _ => Script::Latin,
        }
    };
    Cow::Owned(to_script(word, target))
}

fn to_script(word: &str, script: Script) -> String {
    word.chars()
        .map(|c| match script {
            Script::Latin => cyrillic_to_latin(c).unwrap_or(c),
            Script::Cyrillic => latin_to_cyrillic(c).unwrap_or(c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keywords_are_upper_cased_and_trimmed() {
        assert_eq!(normalize("  stop  "), "STOP");
        assert_eq!(normalize("Mau"), "MAU");
        assert_eq!(normalize("стоп"), "СТОП");
    }

    #[test]
    fn full_width_forms_become_ascii() {
        assert_eq!(normalize("ＳＴＯＰ"), "STOP");
        assert_eq!(normalize("ｍａｕ　ｐｒｏｍｏ"), "MAU PROMO");
    }

    #[test]
    fn zero_width_and_control_characters_are_removed_inside_words() {
        assert_eq!(normalize("S\u{200B}T\u{200D}O\u{FEFF}P"), "STOP");
        assert_eq!(normalize("ST\0OP"), "STOP");
        assert_eq!(normalize("\u{202E}STOP\u{2066}"), "STOP");
    }

    #[test]
    fn whitespace_controls_separate_words() {
        assert_eq!(normalize("stop\nplease\tnow"), "STOP PLEASE NOW");
    }

    #[test]
    fn punctuation_and_emoji_around_words_are_dropped() {
        assert_eq!(normalize("🛑 STOP 🛑"), "STOP");
        assert_eq!(normalize("stop!!!"), "STOP");
        assert_eq!(normalize("Stop. Thank you"), "STOP THANK YOU");
        assert_eq!(normalize("👍🏽❤️"), "");
        assert_eq!(normalize("opt-out"), "OPT OUT");
    }

    #[test]
    fn apostrophes_inside_words_are_removed_consistently() {
        assert_eq!(normalize("don't"), "DONT");
        assert_eq!(normalize("don’t"), "DONT");
        assert_eq!(normalize("DONʼT"), "DONT");
        assert_eq!(normalize("'stop'"), "STOP");
    }

    #[test]
    fn runs_of_whitespace_collapse_to_one_space() {
        assert_eq!(normalize("mau \u{3000}\u{00A0}  dong"), "MAU DONG");
    }

    #[test]
    fn a_word_with_one_cyrillic_only_letter_is_folded_to_cyrillic() {
        assert_eq!(normalize("CTOП"), "СТОП");
        assert_eq!(normalize("CТОП"), "СТОП");
        assert_eq!(normalize("cтoп"), "СТОП");
        assert_eq!(normalize("ДA"), "ДА");
    }

    #[test]
    fn a_word_with_latin_only_letters_is_folded_to_latin() {
        assert_eq!(normalize("STОP"), "STOP"); // Cyrillic О
        assert_eq!(normalize("ЕND"), "END"); // Cyrillic Е
        assert_eq!(normalize("YЕS"), "YES");
    }

    #[test]
    fn single_script_words_are_left_alone() {
        assert_eq!(normalize("CTOP"), "CTOP");
        assert_eq!(normalize("СТОР"), "СТОР");
    }

    #[test]
    fn a_tie_of_look_alikes_only_prefers_the_majority_then_latin() {
        // С (Cyrillic) + TOP (Latin): all look-alikes, Latin majority.
        assert_eq!(fold_lookalikes("СTOP"), "CTOP");
        // Cyrillic majority.
        assert_eq!(fold_lookalikes("СТОP"), "СТОР");
        // Exact tie: Latin.
        assert_eq!(fold_lookalikes("СTОP"), "CTOP");
    }

    #[test]
    fn a_tie_of_script_only_letters_folds_to_latin() {
        assert_eq!(fold_lookalikes("SОП"), "SOП");
    }

    #[test]
    fn empty_and_emoji_only_texts_normalise_to_nothing() {
        assert_eq!(normalize(""), "");
        assert_eq!(normalize("   \n\t "), "");
        assert_eq!(normalize("🛑🛑"), "");
    }

    proptest::proptest! {
        #[test]
        fn the_ascii_fast_path_matches_the_unicode_path(text in "[\\x00-\\x7F]{0,40}") {
            proptest::prop_assert_eq!(compose(&text, true), compose(&text, false));
        }
    }

    /// The normalisation as it was before the fast paths: general passes
    /// only, iterated to a fixed point.
    fn normalize_reference(text: &str) -> String {
        let mut out = normalize_once_general(text);
        if out.is_ascii() {
            return out;
        }
        for _ in 0..4 {
            let next = normalize_once_general(&out);
            if next == out {
                break;
            }
            out = next;
        }
        out
    }

    fn all_chars() -> impl Iterator<Item = char> {
        (0..=u32::from(char::MAX)).filter_map(char::from_u32)
    }

    #[test]
    fn every_character_of_the_fast_alphabet_agrees_with_the_general_path() {
        for c in all_chars() {
            let Some(class) = simple_class(c) else {
                continue;
            };
            let alone = normalize_once_general(&c.to_string());
            let between = normalize_once_general(&format!("A{c}B"));
            match class {
                Simple::Word(u) => {
                    assert_eq!(alone, u.to_string(), "{c:?}");
                    assert!(u.is_ascii_alphanumeric() || is_upper_cyrillic(u), "{c:?}");
                }
                Simple::Delete => assert_eq!(between, "AB", "{c:?}"),
                Simple::Break => assert_eq!(between, "A B", "{c:?}"),
            }
            if class != Simple::Delete {
                assert!(!is_combining_mark(c), "{c:?}");
                assert_eq!(unicode_normalization::char::canonical_combining_class(c), 0);
            }
        }
    }

    #[test]
    fn no_character_of_the_fast_alphabet_can_compose_with_the_one_before() {
        // Every character that can be the second half of a canonical
        // composition appears after the first character of some canonical
        // decomposition (Hangul jamo compose algorithmically).
        let mut second_halves = std::collections::HashSet::new();
        for c in all_chars() {
            let mut position = 0;
            unicode_normalization::char::decompose_canonical(c, |d| {
                if position > 0 {
                    second_halves.insert(d);
                }
                position += 1;
            });
        }
        for c in all_chars() {
            if matches!(simple_class(c), None | Some(Simple::Delete)) {
                continue;
            }
            assert!(!second_halves.contains(&c), "{c:?}");
            assert!(!matches!(c, '\u{1100}'..='\u{11FF}'), "{c:?}");
            // Nor can what NFKC first makes of it (full-width letters, spaces).
            let first = c.to_string().nfkd().next();
            assert!(first.is_some_and(|f| !second_halves.contains(&f)), "{c:?}");
        }
    }

    /// Pieces of the fast path's alphabet, with the look-alikes that folding
    /// acts on, and a few characters outside it.
    const PIECES: &[&str] = &[
        "a", "C", "o", "P", "t", "x", "S", "n", "1", "А", "с", "О", "р", "П", "д", "ё", "Ї", "й",
        "ѝ", "Я", "Ｓ", "ｔ", "０", "＇", "｀", "！", " ", "\u{3000}", "\u{00A0}", "\t", "\n",
        "\u{0B}", "\u{1F}", "\0", "\u{7F}", "'", "`", "’", "‘", "“", "…", "-", "—", ".", "?",
        "\u{200B}", "\u{200D}", "\u{FEFF}", "\u{FE0F}", "\u{00AD}", "🛑", "🙏", "👍", "🏽", "❤",
        "é", "\u{0301}", "\u{0306}", "ß", "ﬁ", "Ω",
    ];

    fn pieces() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        proptest::collection::vec(proptest::sample::select(PIECES), 0..16).prop_map(|p| p.concat())
    }

    proptest::proptest! {
        #[test]
        fn the_fast_path_matches_the_general_path_on_ascii(text in "[\\x00-\\x7F]{0,40}") {
            proptest::prop_assert_eq!(normalize_simple(&text), Some(normalize_once_general(&text)));
        }

        #[test]
        fn the_fast_path_matches_the_general_path_when_it_applies(
            text in proptest::prop_oneof![pieces(), proptest::arbitrary::any::<String>()],
        ) {
            if let Some(fast) = normalize_simple(&text) {
                proptest::prop_assert_eq!(fast, normalize_once_general(&text));
            }
        }

        #[test]
        fn a_fixed_point_is_one(
            text in proptest::prop_oneof![pieces(), proptest::arbitrary::any::<String>()],
        ) {
            let once = normalize_once(&text);
            if is_fixed_point(&once) {
                proptest::prop_assert_eq!(normalize_once_general(&once), once);
            }
        }

        #[test]
        fn normalize_matches_the_reference(
            text in proptest::prop_oneof![pieces(), proptest::arbitrary::any::<String>()],
        ) {
            proptest::prop_assert_eq!(normalize(&text), normalize_reference(&text));
        }
    }

    #[test]
    fn normalisation_is_idempotent_on_examples() {
        for text in [
            "CTOП",
            "e\u{200D}\u{0301}x",
            "А\u{030A}B",
            "ǰ ΐ ß ﬁ",
            "Don’t stop!",
            "\u{0345}x",
        ] {
            let once = normalize(text);
            assert_eq!(normalize(&once), once, "input {text:?}");
        }
    }
}
