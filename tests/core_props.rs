//! Properties of the core over generated inputs: classification never
//! panics, normalisation and respelling are idempotent, a leading opt-out
//! keyword is never read as consent, letter games keep an opt-out an opt-out
//! and never make consent, and the state machine keeps its invariants over
//! random message sequences.

use chrono::{DateTime, Duration, TimeZone, Utc};
use keyward::core::{
    decide, decide_each, normalize, Action, Classification, Classifier, ClassifierConfig, Facts,
    Outcome, Policy, ProgramKeywords, Reason, ReplyKind, State,
};
use proptest::prelude::*;
use proptest::sample::select;
use std::sync::OnceLock;

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| {
        let program = |name: &str| ProgramKeywords {
            name: name.to_string(),
            ..Default::default()
        };
        Classifier::new(&ClassifierConfig {
            programs: vec![program("promo"), program("news")],
        })
    })
}

const OPT_OUT_WORDS: &[&str] = &[
    "UNSUBSCRIBE",
    "BERHENTI",
    "UNREG",
    "STOP",
    "STOPALL",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "СТОП",
    "ОТПИСКА",
    "ОТПИСАТЬСЯ",
    "ХВАТИТ",
];

/// Pieces that make generated texts look like real (and hostile) SMS.
const PIECES: &[&str] = &[
    "MAU",
    "mau",
    "YA",
    "ya",
    "YES",
    "да",
    "ДА",
    "START",
    "старт",
    "stop",
    "STOP",
    "СТОП",
    "CTOП",
    "unsubscribe",
    "UNREG",
    "berhenti",
    "HELP",
    "info",
    "promo",
    "PROMO",
    "news",
    "dong",
    "please",
    "пожалуйста",
    "all",
    "ALL",
    "всё",
    "don't",
    "do not",
    "jangan",
    "не",
    "tidak mau lagi",
    "gak",
    "gausah",
    "jgn",
    "lg",
    "udh",
    "ngak",
    "STOOOP",
    "s t o p",
    "5T0P",
    "mauuu",
    "M A U",
    "кирим",
    " ",
    "  ",
    "\n",
    "\t",
    "\0",
    "\u{200B}",
    "\u{200D}",
    "\u{FEFF}",
    "\u{00AD}",
    "\u{202E}",
    "\u{FE0F}",
    "\u{0301}",
    "\u{0308}",
    "\u{030A}",
    "\u{0345}",
    "ǰ",
    "ΐ",
    "ß",
    "ﬁ",
    "ＳＴＯＰ",
    "ｍａｕ",
    "🛑",
    "🙏",
    "👍🏽",
    "!",
    "?",
    ".",
    ",",
    "'",
    "’",
    "-",
    "😀",
    "А",
    "A",
    "О",
    "O",
    "С",
    "C",
    "Р",
    "P",
    "П",
    "S",
    "Ё",
    "é",
    "e",
    "1",
    "١",
    "²",
    "Ⅻ",
    "ǅ",
    "İ",
    "ı",
    "ŉ",
    "ﷺ",
    "㎏",
    "\u{1F1EE}\u{1F1E9}",
];

fn sms_like() -> impl Strategy<Value = String> {
    prop::collection::vec(select(PIECES), 0..12).prop_map(|p| p.concat())
}

/// Latin/Cyrillic look-alikes mixed with combining marks: the corner where
/// folding a script can enable a new composition.
const MIXED: &[&str] = &[
    "А", "A", "О", "O", "С", "C", "Е", "E", "Р", "P", "Н", "H", "У", "Y", "П", "S", "И", "Й", "Ё",
    "\u{0301}", "\u{0308}", "\u{030A}", "\u{0306}", "\u{0300}", "\u{0327}", " ",
];

fn mixed_words() -> impl Strategy<Value = String> {
    prop::collection::vec(select(MIXED), 1..8).prop_map(|p| p.concat())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), sms_like(), mixed_words(), "\\PC{0,40}"]
}

proptest! {
    #[test]
    fn classification_never_panics_on_any_string(text in any_text()) {
        let c = classifier().classify(&text);
        if c.action == Action::Unknown {
            prop_assert_eq!(c.language, None);
        }
    }

    #[test]
    fn normalisation_is_idempotent(text in any_text()) {
        let once = normalize(&text);
        prop_assert_eq!(normalize(&once), once.clone());
        prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
    }

    #[test]
    fn classifying_the_normalised_text_gives_the_same_answer(text in any_text()) {
        let c = classifier();
        prop_assert_eq!(c.classify(&text), c.classify(&normalize(&text)));
    }

    #[test]
    fn a_leading_opt_out_keyword_is_never_read_as_an_opt_in(
        keyword in select(OPT_OUT_WORDS),
        lower in any::<bool>(),
        rest in any_text(),
    ) {
        let keyword = if lower { keyword.to_lowercase() } else { keyword.to_string() };
        let text = format!("{keyword} {rest}");
        let c = classifier().classify(&text);
        prop_assert!(c.action.is_opt_out(), "{:?} -> {:?}", text, c);
    }

    #[test]
    fn no_text_whose_first_word_is_an_opt_out_keyword_is_an_opt_in(text in any_text()) {
        let normalised = normalize(&text);
        let c = classifier().classify(&text);
        let first = normalised.split(' ').next().unwrap_or("");
        if OPT_OUT_WORDS.contains(&first) {
            prop_assert!(c.action.is_opt_out(), "{:?} -> {:?}", text, c);
        }
        // Stronger: an opt-out keyword anywhere rules out consent.
        if normalised.split(' ').any(|w| OPT_OUT_WORDS.contains(&w)) {
            prop_assert!(!matches!(c.action, Action::OptIn | Action::Confirm), "{:?} -> {:?}", text, c);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn ten_thousand_characters_of_anything_neither_panic_nor_break_idempotence(
        chars in prop::collection::vec(any::<char>(), 9_000..10_001),
        piece in select(PIECES),
    ) {
        let mut text: String = chars.into_iter().collect();
        text.push_str(piece);
        let c = classifier().classify(&text);
        prop_assert!(Action::ALL.contains(&c.action));
        let once = normalize(&text);
        prop_assert_eq!(normalize(&once), once);
    }
}

/// Opt-in and confirmation keywords: no letter game may reach them.
const CONSENT_WORDS: &[&str] = &[
    "MAU",
    "DAFTAR",
    "REG",
    "START",
    "YES",
    "SUBSCRIBE",
    "JOIN",
    "UNSTOP",
    "ДА",
    "СТАРТ",
    "ПОДПИСКА",
    "ПОДПИСАТЬСЯ",
    "YA",
];

/// Digits people type for letters.
fn as_digit(c: char) -> Option<char> {
    match c {
        'O' => Some('0'),
        'I' | 'L' => Some('1'),
        'E' => Some('3'),
        'A' => Some('4'),
        'S' => Some('5'),
        'T' => Some('7'),
        _ => None,
    }
}

/// `word` with a letter game: `game` 0 repeats letter `at` `times` times,
/// 1 separates the letters by `sep`, 2 types digits for the letters `mask`
/// selects (at least one letter stays).
fn letter_game(word: &str, game: u8, at: usize, times: usize, sep: &str, mask: u32) -> String {
    let chars: Vec<char> = word.chars().collect();
    match game {
        0 => {
            let i = at % chars.len();
            let mut out: String = chars[..=i].iter().collect();
            out.extend(std::iter::repeat_n(chars[i], times));
            out.extend(&chars[i + 1..]);
            out
        }
        1 => chars
            .iter()
            .map(char::to_string)
            .collect::<Vec<_>>()
            .join(sep),
        _ => {
            let mut out: Vec<char> = chars
                .iter()
                .enumerate()
                .map(|(i, &c)| match as_digit(c) {
                    Some(d) if mask & (1 << (i % 32)) != 0 => d,
                    _ => c,
                })
                .collect();
            if out.iter().all(|c| c.is_ascii_digit()) {
                out[0] = chars[0];
            }
            out.into_iter().collect()
        }
    }
}

proptest! {
    #[test]
    fn respelling_is_idempotent(text in any_text()) {
        let c = classifier();
        let once = c.respelled(&text);
        prop_assert_eq!(c.respelled(&once), once.clone());
        prop_assert_eq!(normalize(&once), once);
    }

    #[test]
    fn a_letter_game_on_an_opt_out_keyword_is_an_opt_out(
        keyword in select(OPT_OUT_WORDS),
        game in 0u8..3,
        at in 0usize..12,
        times in 1usize..5,
        sep in select(&[" ", "-", ".", ". ", "_"][..]),
        mask in any::<u32>(),
        lower in any::<bool>(),
    ) {
        let text = letter_game(keyword, game, at, times, sep, mask);
        let text = if lower { text.to_lowercase() } else { text };
        let c = classifier().classify(&text);
        prop_assert!(c.action.is_opt_out(), "{:?} -> {:?}", text, c);
    }

    #[test]
    fn a_letter_game_never_makes_consent(
        keyword in select(CONSENT_WORDS),
        game in 0u8..3,
        at in 0usize..12,
        times in 1usize..5,
        sep in select(&[" ", "-", ".", ". ", "_"][..]),
        mask in any::<u32>(),
        rest in prop_oneof![Just(String::new()), Just(" promo".to_string()), Just(" dong".to_string())],
    ) {
        let played = letter_game(keyword, game, at, times, sep, mask);
        // A digit mask that hits no letter leaves the keyword as it was.
        prop_assume!(played != keyword);
        let text = format!("{played}{rest}");
        let c = classifier().classify(&text);
        prop_assert!(!matches!(c.action, Action::OptIn | Action::Confirm), "{:?} -> {:?}", text, c);
    }

    #[test]
    fn consent_is_only_ever_led_by_a_consent_keyword_as_typed(text in any_text()) {
        let c = classifier().classify(&text);
        if matches!(c.action, Action::OptIn | Action::Confirm) {
            let normalised = normalize(&text);
            let first = normalised.split(' ').next().unwrap_or("");
            prop_assert!(CONSENT_WORDS.contains(&first), "{:?} -> {:?}", text, c);
        }
    }
}

// ---------------------------------------------------------------- machine

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0)
        .single()
        .expect("fixed instant")
}

fn message(action: Action) -> Classification {
    Classification {
        action,
        program: None,
        language: None,
        keyword: None,
        reason: Reason::ExactKeyword,
    }
}

#[derive(Debug, Clone)]
struct Step {
    action: Action,
    advance_secs: i64,
    /// Offset of the gateway timestamp from `now`, if any.
    sent_offset_secs: Option<i64>,
    same_text_last_hour: u32,
}

fn step() -> impl Strategy<Value = Step> {
    (
        select(Action::ALL.to_vec()),
        prop_oneof![0i64..120, 0i64..200_000],
        prop::option::of(-200_000i64..3_600),
        0u32..6,
    )
        .prop_map(
            |(action, advance_secs, sent_offset_secs, same_text_last_hour)| Step {
                action,
                advance_secs,
                sent_offset_secs,
                same_text_last_hour,
            },
        )
}

fn policy() -> impl Strategy<Value = Policy> {
    (any::<bool>(), 1i64..48, 0i64..48, 0i64..48, 1u32..5).prop_map(
        |(double_opt_in, ttl, bye, fallback, loop_threshold)| Policy {
            double_opt_in,
            pending_ttl: Duration::hours(ttl),
            opt_out_reply_cooldown: Duration::hours(bye),
            fallback_cooldown: Duration::hours(fallback),
            loop_threshold,
        },
    )
}

/// Updates the facts the way the service does after storing a decision.
fn record(facts: &mut Facts, c: &Classification, d: &keyward::core::Decision, now: DateTime<Utc>) {
    if d.transition.is_some() {
        facts.changed_at = Some(now);
    }
    facts.state = d.next_state;
    if c.action.is_opt_out() {
        let effective = facts.sent_at.unwrap_or(now);
        facts.last_opt_out_at = Some(
            facts
                .last_opt_out_at
                .map_or(effective, |t| t.max(effective)),
        );
    }
    match d.reply {
        Some(ReplyKind::Goodbye) => facts.last_goodbye_at = Some(now),
        Some(ReplyKind::Fallback) => facts.last_fallback_at = Some(now),
        _ => {}
    }
}

proptest! {
    #[test]
    fn the_state_machine_keeps_its_invariants_over_any_sequence(
        policy in policy(),
        steps in prop::collection::vec(step(), 1..40),
    ) {
        let mut facts = Facts::default();
        let mut now = t0();
        for s in steps {
            now += Duration::seconds(s.advance_secs);
            facts.sent_at = s.sent_offset_secs.map(|o| now + Duration::seconds(o));
            facts.same_text_last_hour = s.same_text_last_hour;
            let c = message(s.action);
            let before = facts.state;

            let d = decide(&facts, &c, &policy, now);
            prop_assert_eq!(d, decide(&facts, &c, &policy, now), "decide is deterministic");

            match d.transition {
                Some((from, to)) => {
                    prop_assert_eq!(from, before, "a transition starts from the state before");
                    prop_assert_eq!(to, d.next_state);
                    prop_assert_eq!(d.outcome, Outcome::Applied);
                    prop_assert!(d.reply.is_some(), "every state change gets a reply");
                }
                None => {
                    prop_assert_eq!(d.next_state, before, "no transition, no change");
                    prop_assert_ne!(d.outcome, Outcome::Applied);
                }
            }
            if d.next_state == State::Subscribed && before != State::Subscribed {
                prop_assert!(
                    matches!(c.action, Action::OptIn | Action::Confirm)
                        && matches!(d.action, Action::OptIn | Action::Confirm),
                    "only an explicit opt-in or confirmation subscribes: {:?} {:?}", c.action, d
                );
            }
            if d.transition.is_some_and(|(_, to)| to == State::Pending) {
                prop_assert!(policy.double_opt_in && c.action == Action::OptIn);
            }
            if c.action.is_opt_out() {
                prop_assert_eq!(d.next_state, State::Unsubscribed, "an opt-out is always applied");
            }
            if d.outcome == Outcome::Stale {
                prop_assert!(d.reply.is_none());
            }
            record(&mut facts, &c, &d, now);
        }
    }

    #[test]
    fn one_message_over_many_programs_gets_at_most_one_reply(
        policy in policy(),
        action in select(Action::ALL.to_vec()),
        states in prop::collection::vec((select(State::ALL.to_vec()), 0i64..100, any::<bool>()), 0..6),
    ) {
        let now = t0() + Duration::hours(100);
        let items: Vec<Facts> = states
            .iter()
            .map(|(state, ago, goodbye)| Facts {
                state: *state,
                changed_at: Some(now - Duration::hours(*ago)),
                last_goodbye_at: goodbye.then_some(now - Duration::hours(*ago)),
                ..Facts::default()
            })
            .collect();
        let c = message(action);
        let each = decide_each(&items, &c, &policy, now);
        prop_assert_eq!(each.len(), items.len());
        prop_assert!(each.iter().filter(|d| d.reply.is_some()).count() <= 1);
        let any_reply = items.iter().any(|f| decide(f, &c, &policy, now).reply.is_some());
        prop_assert_eq!(any_reply, each.iter().any(|d| d.reply.is_some()));
        for (f, d) in items.iter().zip(&each) {
            let alone = decide(f, &c, &policy, now);
            prop_assert_eq!((alone.next_state, alone.transition), (d.next_state, d.transition));
        }
    }
}
