//! Runs every case of `tests/data/classify_cases.toml` and reports all the
//! failing ones at once.

use keyward::core::{Classifier, ClassifierConfig, ProgramKeywords};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    text: String,
    action: String,
    program: Option<String>,
    language: Option<String>,
    keyword: Option<String>,
    reason: Option<String>,
    note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
}

fn classifier() -> Classifier {
    let program = |name: &str| ProgramKeywords {
        name: name.to_string(),
        ..Default::default()
    };
    Classifier::new(&ClassifierConfig {
        programs: vec![program("promo"), program("news")],
    })
}

fn load() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/classify_cases.toml"
    );
    let text = std::fs::read_to_string(path).expect("read the case table");
    toml::from_str::<Cases>(&text)
        .expect("parse the case table")
        .case
}

/// What went wrong with one case, or `None` when it passed.
fn check(classifier: &Classifier, case: &Case) -> Option<String> {
    let got = classifier.classify(&case.text);
    let mut wrong = Vec::new();
    if got.action.as_str() != case.action {
        wrong.push(format!("action {} (want {})", got.action, case.action));
    }
    if got.program != case.program {
        wrong.push(format!(
            "program {:?} (want {:?})",
            got.program, case.program
        ));
    }
    let language = got.language.map(|l| l.as_str().to_string());
    if case.action == "unknown" && language.is_some() {
        wrong.push(format!("language {language:?} for unknown (want None)"));
    }
    if case.language.is_some() && language != case.language {
        wrong.push(format!("language {language:?} (want {:?})", case.language));
    }
    if case.keyword.is_some() && got.keyword != case.keyword {
        wrong.push(format!(
            "keyword {:?} (want {:?})",
            got.keyword, case.keyword
        ));
    }
    if let Some(reason) = &case.reason {
        if got.reason.as_str() != reason {
            wrong.push(format!("reason {} (want {reason})", got.reason));
        }
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "{:?} ({}): {}\n    got {:?}",
            case.text,
            case.note,
            wrong.join(", "),
            got
        )
    })
}

#[test]
fn every_case_in_the_table_is_classified_as_written() {
    let classifier = classifier();
    let cases = load();
    let failures: Vec<String> = cases.iter().filter_map(|c| check(&classifier, c)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} classification cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_covers_every_action_and_language_with_enough_cases() {
    let cases = load();
    assert!(cases.len() >= 170, "only {} cases", cases.len());
    for action in [
        "opt_in",
        "confirm",
        "opt_out",
        "opt_out_all",
        "help",
        "unknown",
    ] {
        assert!(
            cases.iter().any(|c| c.action == action),
            "no case for {action}"
        );
    }
    for action in ["opt_in", "opt_out", "opt_out_all", "help"] {
        for lang in ["id", "en", "ru"] {
            assert!(
                cases
                    .iter()
                    .any(|c| c.action == action && c.language.as_deref() == Some(lang)),
                "no {lang} case for {action}"
            );
        }
    }
}

#[test]
fn the_runner_reports_a_wrong_expectation() {
    // Guards the runner itself: a case that expects the wrong action fails.
    let case = Case {
        text: "STOP".into(),
        action: "opt_in".into(),
        program: None,
        language: None,
        keyword: None,
        reason: None,
        note: "deliberately wrong".into(),
    };
    assert!(check(&classifier(), &case).is_some());
}
