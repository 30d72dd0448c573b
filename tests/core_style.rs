//! The broadcast text rules of issue #15, as specifications:
//!
//! - every case of the development table `tests/data/style_cases.toml` gives
//!   exactly the findings written there (all failures reported at once);
//! - the hold-out `tests/data/style_holdout.toml`, written before the rules
//!   and never tuned against, is measured — per-code recall and false
//!   findings (`cargo test --test core_style holdout_figures -- --nocapture`
//!   prints them) — and held to floors;
//! - properties over generated input: template parsing and rendering never
//!   panic, a template without `{stop}` always ends with the stop sentence,
//!   recipient values never bring control characters in, and the lint never
//!   panics and points inside the text.

use std::collections::BTreeMap;

use keyward::core::style::{check, Finding, FindingCode, StyleKind};
use keyward::core::{stop_sentence, BroadcastVars, Language, Template};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    text: String,
    lang: Option<Language>,
    kind: StyleKind,
    brand: String,
    /// The codes of the findings, in any order; empty for a clean text.
    expect: Vec<FindingCode>,
    /// Development table only: the words some findings must report.
    words: Option<BTreeMap<FindingCode, Vec<String>>>,
    /// Development table only: the char position some findings must report.
    position: Option<BTreeMap<FindingCode, usize>>,
    note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
}

fn load(name: &str) -> Vec<Case> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("read the case table");
    toml::from_str::<Cases>(&text)
        .expect("parse the case table")
        .case
}

fn run(case: &Case) -> Vec<Finding> {
    check(&case.text, case.lang, &case.brand, case.kind)
}

fn sorted(mut codes: Vec<FindingCode>) -> Vec<FindingCode> {
    codes.sort();
    codes
}

/// What went wrong with one case, or `None` when it passed.
fn failure(case: &Case) -> Option<String> {
    let findings = run(case);
    let got = sorted(findings.iter().map(|f| f.code).collect());
    let mut wrong = Vec::new();
    if got != sorted(case.expect.clone()) {
        wrong.push(format!(
            "codes {got:?} (want {:?})",
            sorted(case.expect.clone())
        ));
    }
    let find = |code: &FindingCode| findings.iter().find(|f| f.code == *code);
    for (code, words) in case.words.iter().flatten() {
        let got = find(code).map(|f| &f.words);
        if got != Some(words) {
            wrong.push(format!("{code} words {got:?} (want {words:?})"));
        }
    }
    for (code, position) in case.position.iter().flatten() {
        let got = find(code).map(|f| f.position);
        if got != Some(*position) {
            wrong.push(format!("{code} position {got:?} (want {position})"));
        }
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "{:?} ({}): {}\n    got {findings:?}",
            case.text,
            case.note,
            wrong.join(", ")
        )
    })
}

#[test]
fn every_case_in_the_development_table_gives_exactly_its_findings() {
    let cases = load("style_cases.toml");
    let failures: Vec<String> = cases.iter().filter_map(failure).collect();
    assert!(
        failures.is_empty(),
        "{} of {} style cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn both_tables_cover_every_code_language_and_kind() {
    for (name, least) in [("style_cases.toml", 150), ("style_holdout.toml", 120)] {
        let cases = load(name);
        assert!(cases.len() >= least, "{name}: only {} cases", cases.len());
        let clean = cases.iter().filter(|c| c.expect.is_empty()).count();
        assert!(clean * 3 >= cases.len(), "{name}: only {clean} clean texts");
        for code in FindingCode::ALL {
            let n = cases.iter().filter(|c| c.expect.contains(&code)).count();
            assert!(n >= 5, "{name}: {n} cases of {code}");
        }
        for lang in [
            Some(Language::Id),
            Some(Language::En),
            Some(Language::Ru),
            None,
        ] {
            assert!(cases.iter().any(|c| c.lang == lang), "{name}: no {lang:?}");
        }
        assert!(cases.iter().any(|c| c.kind == StyleKind::Notice), "{name}");
    }
    // The hold-out is measured on codes alone, so that it stays a sample of
    // texts rather than a specification of the lint's output.
    assert!(load("style_holdout.toml")
        .iter()
        .all(|c| c.words.is_none() && c.position.is_none()));
}

#[test]
fn the_runner_reports_a_wrong_expectation() {
    let case = Case {
        text: "Toko Maju: diskon utk semua".into(),
        lang: Some(Language::Id),
        kind: StyleKind::Marketing,
        brand: "Toko Maju".into(),
        expect: vec![],
        words: None,
        position: None,
        note: "deliberately wrong".into(),
    };
    assert!(failure(&case).is_some());
    let case = Case {
        expect: vec![FindingCode::Abbreviation],
        words: Some(BTreeMap::from([(
            FindingCode::Abbreviation,
            vec!["yg".into()],
        )])),
        ..case
    };
    assert!(failure(&case).is_some());
}

/// Per-code recall and false findings on the hold-out.
#[derive(Debug, Default)]
struct Figures {
    /// Per code: cases that deserve it, of them found, cases that do not
    /// deserve it but got it.
    per_code: BTreeMap<FindingCode, (usize, usize, usize)>,
    clean: usize,
    /// Clean texts with at least one finding.
    clean_flagged: usize,
    lines: Vec<String>,
}

fn figures(cases: &[Case]) -> Figures {
    let mut f = Figures::default();
    for case in cases {
        let findings = run(case);
        let got: Vec<FindingCode> = findings.iter().map(|x| x.code).collect();
        for code in FindingCode::ALL {
            let e = f.per_code.entry(code).or_default();
            match (case.expect.contains(&code), got.contains(&code)) {
                (true, true) => {
                    e.0 += 1;
                    e.1 += 1;
                }
                (true, false) => {
                    e.0 += 1;
                    f.lines
                        .push(format!("missed {code}: {:?} ({})", case.text, case.note));
                }
                (false, true) => {
                    e.2 += 1;
                    let x = findings.iter().find(|x| x.code == code).expect("found");
                    f.lines.push(format!(
                        "false {code} {:?}: {:?} ({})",
                        x.words, case.text, case.note
                    ));
                }
                (false, false) => {}
            }
        }
        if case.expect.is_empty() {
            f.clean += 1;
            f.clean_flagged += usize::from(!got.is_empty());
        }
    }
    f
}

/// Issue #15's figures on the hold-out (`cargo test --test core_style
/// holdout_figures -- --nocapture` prints them). First measured at
/// ee05e64, once the rules and the development table were done: 107/110
/// found (97.3 %; every code at least 10/11), no false finding, none of the
/// 91 clean texts flagged. The misses (`y` for `ya`; `avail`, `wk`; a
/// text in capitals made mostly of words of four letters or fewer) were
/// left unfixed, so that the figures stay those of rules never tuned on
/// the hold-out. The floors hold the rules to them.
#[test]
fn holdout_figures() {
    let cases = load("style_holdout.toml");
    let f = figures(&cases);
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    println!(
        "hold-out: {} cases, {} clean\n  {:<15} {:>16} {:>15}",
        cases.len(),
        f.clean,
        "code",
        "recall",
        "false findings"
    );
    for (code, (want, found, false_)) in &f.per_code {
        println!(
            "  {:<15} {:>7} ({:>5.1} %) {:>15}",
            code.as_str(),
            format!("{found}/{want}"),
            pct(*found, *want),
            false_
        );
    }
    let (want, found): (usize, usize) = f
        .per_code
        .values()
        .fold((0, 0), |(w, g), (want, found, _)| (w + want, g + found));
    let false_findings: usize = f.per_code.values().map(|(_, _, x)| x).sum();
    println!(
        "  {:<15} {:>7} ({:>5.1} %) {:>15}\n  clean texts with a finding: {}/{}\n  {}",
        "all codes",
        format!("{found}/{want}"),
        pct(found, want),
        false_findings,
        f.clean_flagged,
        f.clean,
        f.lines.join("\n  ")
    );
    assert!(
        found * 100 >= want * HOLDOUT_RECALL_FLOOR,
        "recall {found}/{want} under {HOLDOUT_RECALL_FLOOR} %"
    );
    for (code, (want, found, _)) in &f.per_code {
        assert!(
            found * 100 >= want * HOLDOUT_CODE_RECALL_FLOOR,
            "{code}: recall {found}/{want} under {HOLDOUT_CODE_RECALL_FLOOR} %"
        );
    }
    assert_eq!(f.clean_flagged, 0, "clean hold-out texts flagged");
    assert_eq!(
        false_findings, 0,
        "findings a hold-out text does not deserve"
    );
}

/// Percent of the hold-out's defects found, over all codes.
const HOLDOUT_RECALL_FLOOR: usize = 95;
/// Percent found of each code's defects (10 to 45 cases a code).
const HOLDOUT_CODE_RECALL_FLOOR: usize = 90;

// --- Properties ---------------------------------------------------------------

fn vars(lang: Language) -> BroadcastVars<'static> {
    BroadcastVars::new("Toko Maju", "promo", "3344", lang)
}

fn language() -> impl Strategy<Value = Language> {
    prop::sample::select(Language::ALL.to_vec())
}

/// Template text made of prose, variables and braces, with the odd
/// character that is not GSM-7 or not printable.
fn template_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9 .,:!%]{0,12}",
        1 => Just("{brand}".to_string()),
        1 => Just("{program}".to_string()),
        1 => Just("{shortcode}".to_string()),
        1 => Just("{vars.nama}".to_string()),
        1 => Just("{vars.kode_2}".to_string()),
        1 => Just("{{".to_string()),
        1 => Just("}}".to_string()),
        1 => "[ёжé€\n]{1,2}",
    ];
    prop::collection::vec(piece, 1..10).prop_map(|p| p.concat())
}

/// Any recipient value: arbitrary characters, line breaks and invisible
/// marks included.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        any::<String>(),
        "[a\n\r\t\u{202E}\u{200B}\u{2028}\u{0085}\u{0000} ]{0,300}",
    ]
}

proptest! {
    #[test]
    fn parsing_and_rendering_never_panic(text in any::<String>(), v in value(), lang in language()) {
        if let Ok(t) = Template::parse(&text) {
            let recipient: BTreeMap<String, String> =
                t.required_vars().map(|n| (n.to_string(), v.clone())).collect();
            let text = t.render(&vars(lang), &recipient, lang).expect("all values given");
            prop_assert!(t.worst_case_segments(&vars(lang), [&recipient], lang).is_some());
            let _ = t.render_longest(&vars(lang), [&recipient], lang);
            prop_assert!(!text.is_empty());
        }
    }

    #[test]
    fn a_template_without_stop_ends_with_the_stop_sentence(
        text in template_text(), nama in value(), kode in value(), lang in language()
    ) {
        let t = Template::parse(&text);
        prop_assume!(t.is_ok());
        let t = t.unwrap();
        prop_assert!(!t.uses_stop());
        let recipient = BTreeMap::from([("nama".to_string(), nama), ("kode_2".to_string(), kode)]);
        let rendered = t.render(&vars(lang), &recipient, lang).unwrap();
        let sentence = stop_sentence(lang, lang.stop_keyword(), "3344");
        prop_assert!(rendered.ends_with(&sentence), "{:?}", rendered);
        // On its own line, unless the template renders to nothing before it.
        let own_line = format!("\n{sentence}");
        prop_assert!(rendered == sentence || rendered.ends_with(&own_line));
    }

    #[test]
    fn recipient_values_bring_no_control_or_invisible_character(
        nama in value(), kode in value(), lang in language()
    ) {
        let t = Template::parse("{brand}: Halo {vars.nama}, kode {vars.kode_2}. {stop}").unwrap();
        let recipient = BTreeMap::from([("nama".to_string(), nama), ("kode_2".to_string(), kode)]);
        let rendered = t.render(&vars(lang), &recipient, lang).unwrap();
        prop_assert!(
            !rendered.chars().any(|c| c.is_control()
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')),
            "{:?}", rendered
        );
        // Each value is bounded: the text is at most the template and two
        // values of 100 characters.
        prop_assert!(rendered.chars().count() <= 60 + 2 * keyward::core::MAX_VAR_CHARS);
    }

    #[test]
    fn the_lint_never_panics_and_points_inside_the_text(
        text in prop_oneof!["\\PC{0,200}", any::<String>(), template_text()],
        brand in "\\PC{0,20}",
        lang in prop::option::of(language()),
        notice in any::<bool>(),
    ) {
        let kind = if notice { StyleKind::Notice } else { StyleKind::Marketing };
        let chars: Vec<char> = text.chars().collect();
        for f in check(&text, lang, &brand, kind) {
            prop_assert!(f.position <= chars.len());
            if let Some(first) = f.words.first() {
                let at: String = chars[f.position..].iter().take(first.chars().count()).collect();
                prop_assert_eq!(&at, first, "{:?}", f);
            }
        }
    }
}
