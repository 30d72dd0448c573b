//! End-to-end scenarios of the core: real texts through the classifier and
//! the state machine, with the facts updated the way the service does.

use chrono::{DateTime, Duration, TimeZone, Utc};
use keyward::core::{
    decide, decide_each, Action, Classifier, ClassifierConfig, Decision, Facts, Language, Outcome,
    Policy, ProgramKeywords, ReplyKind, State,
};

fn classifier() -> Classifier {
    let program = |name: &str| ProgramKeywords {
        name: name.to_string(),
        ..Default::default()
    };
    Classifier::new(&ClassifierConfig {
        programs: vec![program("promo"), program("news")],
    })
}

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .map(|t| t + Duration::minutes(minutes))
        .expect("fixed instant")
}

/// One subscriber of one program, as the service would keep it.
struct Subscriber {
    facts: Facts,
    policy: Policy,
    classifier: Classifier,
}

impl Subscriber {
    fn new(policy: Policy) -> Self {
        Subscriber {
            facts: Facts::default(),
            policy,
            classifier: classifier(),
        }
    }

    fn texts(
        &mut self,
        text: &str,
        now: DateTime<Utc>,
        sent_at: Option<DateTime<Utc>>,
    ) -> Decision {
        let c = self.classifier.classify(text);
        self.facts.sent_at = sent_at;
        let d = decide(&self.facts, &c, &self.policy, now);
        if d.transition.is_some() {
            self.facts.changed_at = Some(now);
        }
        self.facts.state = d.next_state;
        if c.action.is_opt_out() {
            self.facts.last_opt_out_at = Some(sent_at.unwrap_or(now));
        }
        match d.reply {
            Some(ReplyKind::Goodbye) => self.facts.last_goodbye_at = Some(now),
            Some(ReplyKind::Fallback) => self.facts.last_fallback_at = Some(now),
            _ => {}
        }
        d
    }
}

#[test]
fn mau_then_ya_subscribes_under_double_opt_in() {
    let mut s = Subscriber::new(Policy {
        double_opt_in: true,
        ..Policy::default()
    });
    let d = s.texts("mau dong", at(0), None);
    assert_eq!(d.transition, Some((State::None, State::Pending)));
    assert_eq!(d.reply, Some(ReplyKind::ConfirmRequest));
    let d = s.texts("Ya", at(5), None);
    assert_eq!(d.action, Action::Confirm);
    assert_eq!(d.transition, Some((State::Pending, State::Subscribed)));
    assert_eq!(d.reply, Some(ReplyKind::Welcome));
}

#[test]
fn yes_and_da_confirm_a_pending_opt_in() {
    for confirm in ["YES", "да"] {
        let mut s = Subscriber::new(Policy {
            double_opt_in: true,
            ..Policy::default()
        });
        s.texts("START", at(0), None);
        let d = s.texts(confirm, at(1), None);
        assert_eq!(d.action, Action::Confirm, "{confirm}");
        assert_eq!(d.next_state, State::Subscribed, "{confirm}");
    }
}

#[test]
fn ya_a_day_later_does_not_subscribe_but_mau_asks_again() {
    let mut s = Subscriber::new(Policy {
        double_opt_in: true,
        ..Policy::default()
    });
    s.texts("MAU", at(0), None);
    let d = s.texts("YA", at(24 * 60), None);
    assert_eq!(d.outcome, Outcome::Expired);
    assert_eq!(s.facts.state, State::Pending);
    let d = s.texts("MAU", at(24 * 60 + 1), None);
    assert_eq!(d.reply, Some(ReplyKind::ConfirmRequest));
    let d = s.texts("YA", at(24 * 60 + 2), None);
    assert_eq!(d.next_state, State::Subscribed);
}

#[test]
fn stop_from_a_stranger_is_recorded_and_confirmed_once() {
    let mut s = Subscriber::new(Policy::default());
    let d = s.texts("STOP", at(0), None);
    assert_eq!(d.transition, Some((State::None, State::Unsubscribed)));
    assert_eq!(d.reply, Some(ReplyKind::Goodbye));
    let d = s.texts("stop!!!", at(10), None);
    assert_eq!(d.transition, None);
    assert_eq!(d.reply, None);
}

#[test]
fn a_subscriber_who_stopped_is_not_resubscribed_by_chatter() {
    let mut s = Subscriber::new(Policy::default());
    s.texts("MAU", at(0), None);
    s.texts("СТОП", at(1), None);
    for text in ["YA", "help", "Mau tanya harga", "yes I am on my way", "ok"] {
        let d = s.texts(text, at(2), None);
        assert_eq!(d.next_state, State::Unsubscribed, "{text}");
    }
    let d = s.texts("MAU", at(3), None);
    assert_eq!(d.transition, Some((State::Unsubscribed, State::Subscribed)));
}

#[test]
fn an_opt_in_delivered_after_a_later_stop_is_stale() {
    let mut s = Subscriber::new(Policy::default());
    s.texts("MAU", at(0), Some(at(0)));
    // STOP sent at 10:05, delivered first; a MAU sent at 10:04 arrives late.
    s.texts("STOP", at(6), Some(at(5)));
    let d = s.texts("MAU", at(7), Some(at(4)));
    assert_eq!(d.outcome, Outcome::Stale);
    assert_eq!(d.reply, None);
    assert_eq!(s.facts.state, State::Unsubscribed);
}

#[test]
fn an_auto_responder_gets_one_fallback_and_then_silence() {
    let mut s = Subscriber::new(Policy::default());
    let d = s.texts("I am out of office", at(0), None);
    assert_eq!(d.reply, Some(ReplyKind::Fallback));
    let d = s.texts("I am out of office", at(1), None);
    assert_eq!(d.reply, None, "one fallback per cooldown");
    s.facts.same_text_last_hour = 3;
    s.facts.last_fallback_at = None;
    let d = s.texts("I am out of office", at(2), None);
    assert_eq!(d.reply, None, "a loop gets no reply at all");
}

#[test]
fn stop_all_leaves_every_program_with_one_goodbye() {
    let c = classifier().classify("STOP ALL");
    assert_eq!(c.action, Action::OptOutAll);
    let subscribed = Facts {
        state: State::Subscribed,
        changed_at: Some(at(0)),
        ..Facts::default()
    };
    let ds = decide_each(
        &[subscribed, subscribed, Facts::default()],
        &c,
        &Policy::default(),
        at(5),
    );
    assert!(ds.iter().all(|d| d.next_state == State::Unsubscribed));
    assert_eq!(
        ds.iter()
            .filter(|d| d.reply == Some(ReplyKind::Goodbye))
            .count(),
        1
    );
}

#[test]
fn the_reply_language_follows_the_keyword() {
    let c = classifier();
    assert_eq!(c.classify("UNREG PROMO").language, Some(Language::Id));
    assert_eq!(c.classify("CTOП").language, Some(Language::Ru));
    assert_eq!(c.classify("Stop. Thank you").language, Some(Language::En));
}
