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

use std::borrow::Cow;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use super::keywords;

/// Normalises an inbound text for keyword matching. Never panics.
///
/// Apostrophes are removed, so `don't`, `don’t` and `dont` all become `DONT`.
pub fn normalize(text: &str) -> String {
    let mut out = normalize_once(text);
    if out.is_ascii() {
        // Upper-case ASCII words separated by single spaces are a fixed
        // point (e.g. "🛑 stop 🛑" → "STOP"): no second pass needed.
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

fn normalize_once(text: &str) -> String {
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
