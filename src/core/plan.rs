//! What one inbound message changes across a number's programs: which
//! programs it concerns, the state machine's [`Decision`] for each, and the
//! one reply to send.
//!
//! [`decide`](super::decide) is about one (number, program); a message can
//! be about several: `STOP ALL`, or an opt-out sent to a number that is no
//! configured short code. Rules:
//! - a message to a configured short code concerns the program its keyword
//!   names, else the short code's own program (`home`);
//! - `STOP ALL` concerns every configured program and every program the
//!   number is in;
//! - a message to a number that is no configured short code changes
//!   nothing and is not answered — except an opt-out, which is honoured for
//!   every program as `STOP ALL` is: a routing mistake never loses a stop;
//! - the policy is the program's when the message concerns one, else the
//!   home program's;
//! - at most one reply: the first concerned program's, in configuration
//!   (alphabetical) order, that has one; a program no longer configured is answered in the
//!   home program's name;
//! - a gateway that read the keyword itself ([`Hint`], Twilio's Advanced
//!   Opt-Out) is heard, but never overrules an opt-out we read; a reply it
//!   sent itself is not sent again.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use keyward::core::plan::{plan, Known, Message};
//! use keyward::core::{Classifier, ClassifierConfig, Outcome, Policy, ReplyKind, State};
//!
//! let classifier = Classifier::new(&ClassifierConfig::default());
//! let now = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
//! let c = classifier.classify("STOP");
//! let p = plan(
//!     &Message { classification: &c, home: "promo", routed: true, sent_at: None, hint: None },
//!     &Known::default(),
//!     &["promo"],
//!     |_| Some(Policy::default()),
//!     now,
//! );
//! assert_eq!(p.state, Some(State::Unsubscribed));
//! assert_eq!(p.outcome, Outcome::Applied);
//! assert_eq!(p.reply.map(|r| r.kind), Some(ReplyKind::Goodbye));
//! ```

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::classify::{Action, Classification};
use super::machine::{decide_each, Facts, Outcome, Policy, State};
use super::reply::ReplyKind;

/// What a gateway that classifies keywords itself took the message for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    OptIn,
    OptOut,
    Help,
}

/// The message, as the shell classified and routed it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub classification: &'a Classification,
    /// The program of the short code it was sent to (of the first short
    /// code, when it went to none).
    pub home: &'a str,
    /// Sent to a configured short code?
    pub routed: bool,
    /// The gateway's time of sending, if it said.
    pub sent_at: Option<DateTime<Utc>>,
    pub hint: Option<Hint>,
}

/// One program the number is in, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub program: String,
    pub state: State,
    pub since: DateTime<Utc>,
    pub last_opt_out_at: Option<DateTime<Utc>>,
}

/// What is known of the number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub subscriptions: Vec<Subscription>,
    pub last_goodbye_at: Option<DateTime<Utc>>,
    pub last_fallback_at: Option<DateTime<Utc>>,
    /// Messages with this very text from this number in the last hour.
    pub same_text_last_hour: u32,
}

/// One state change to append to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub program: String,
    pub from: State,
    pub to: State,
}

/// The reply to queue: which program's, of which kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedReply {
    pub program: String,
    pub kind: ReplyKind,
}

/// Everything one message changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub action: Action,
    /// The program it concerned, when it concerned one.
    pub program: Option<String>,
    /// The resulting state; `None` when nothing was decided (a message to
    /// no configured short code that is not an opt-out).
    pub state: Option<State>,
    pub outcome: Outcome,
    pub changes: Vec<Change>,
    pub reply: Option<PlannedReply>,
}

/// Decides what `message` changes, given what is `known` of its number,
/// the `configured` programs (in configuration order) and their policies.
pub fn plan(
    message: &Message<'_>,
    known: &Known,
    configured: &[&str],
    policy_of: impl Fn(&str) -> Option<Policy>,
    now: DateTime<Utc>,
) -> Plan {
    let c = message.classification;
    if !message.routed && !c.action.is_opt_out() {
        return Plan {
            action: c.action,
            program: None,
            state: None,
            outcome: Outcome::NoChange,
            changes: vec![],
            reply: None,
        };
    }
    let targets: Vec<&str> = if c.action == Action::OptOutAll || !message.routed {
        let mut all: BTreeSet<&str> = configured.iter().copied().collect();
        all.extend(known.subscriptions.iter().map(|s| s.program.as_str()));
        all.into_iter().collect()
    } else {
        vec![c.program.as_deref().unwrap_or(message.home)]
    };
    let facts: Vec<Facts> = targets
        .iter()
        .map(|program| {
            let sub = known.subscriptions.iter().find(|s| s.program == *program);
            Facts {
                state: sub.map_or(State::None, |s| s.state),
                changed_at: sub.map(|s| s.since),
                last_opt_out_at: sub.and_then(|s| s.last_opt_out_at),
                last_goodbye_at: known.last_goodbye_at,
                last_fallback_at: known.last_fallback_at,
                same_text_last_hour: known.same_text_last_hour,
                sent_at: message.sent_at,
            }
        })
        .collect();
    let policy_program = if targets.len() == 1 {
        targets[0]
    } else {
        message.home
    };
    let policy = policy_of(policy_program).unwrap_or_default();
    let decisions = decide_each(&facts, c, &policy, now);

    let changes: Vec<Change> = targets
        .iter()
        .zip(&decisions)
        .filter_map(|(program, d)| {
            d.transition.map(|(from, to)| Change {
                program: (*program).to_owned(),
                from,
                to,
            })
        })
        .collect();
    let reply = targets.iter().zip(&decisions).find_map(|(program, d)| {
        let kind = d.reply?;
        if message.hint.is_some_and(|h| answered_by_gateway(h, kind)) {
            return None;
        }
        let program = if configured.contains(program) {
            *program
        } else {
            message.home
        };
        Some(PlannedReply {
            program: program.to_owned(),
            kind,
        })
    });

    if let [program] = targets.as_slice() {
        let d = &decisions[0];
        Plan {
            action: d.action,
            program: Some((*program).to_owned()),
            state: Some(d.next_state),
            outcome: d.outcome,
            changes,
            reply,
        }
    } else {
        Plan {
            action: Action::OptOutAll,
            program: None,
            state: Some(State::Unsubscribed),
            outcome: if changes.is_empty() {
                Outcome::NoChange
            } else {
                Outcome::Applied
            },
            changes,
            reply,
        }
    }
}

/// The classification with a gateway's reading heard: its reading wins,
/// except that an opt-out is never overruled — when either of us reads a
/// stop, it is a stop. Our program and language are kept.
pub fn with_hint(mut c: Classification, hint: Option<Hint>) -> Classification {
    if c.action.is_opt_out() {
        return c;
    }
    let action = match hint {
        Some(Hint::OptOut) => Action::OptOut,
        Some(Hint::OptIn) if c.action != Action::OptIn => Action::OptIn,
        Some(Hint::Help) if c.action != Action::Help => Action::Help,
        _ => return c,
    };
    c.action = action;
    c.keyword.get_or_insert_with(|| "provider".to_owned());
    c
}

/// Is a reply of `kind` what the gateway already sent for its `hint`?
/// Twilio answers STOP, START and HELP itself; a double opt-in's
/// confirmation request, or a goodbye where we read a stop in its START,
/// is ours to send.
fn answered_by_gateway(hint: Hint, kind: ReplyKind) -> bool {
    matches!(
        (hint, kind),
        (Hint::OptOut, ReplyKind::Goodbye)
            | (
                Hint::OptIn,
                ReplyKind::Welcome | ReplyKind::AlreadySubscribed
            )
            | (Hint::Help, ReplyKind::Help)
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::core::{Classifier, ClassifierConfig, ProgramKeywords};

    fn classifier() -> Classifier {
        Classifier::new(&ClassifierConfig {
            programs: ["promo", "news"]
                .map(|name| ProgramKeywords {
                    name: name.into(),
                    ..Default::default()
                })
                .into(),
        })
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
    }

    fn subscribed(program: &str) -> Subscription {
        Subscription {
            program: program.into(),
            state: State::Subscribed,
            since: now() - chrono::Duration::days(10),
            last_opt_out_at: None,
        }
    }

    fn run(text: &str, routed: bool, known: &Known, hint: Option<Hint>) -> Plan {
        let c = with_hint(classifier().classify(text), hint);
        let message = Message {
            classification: &c,
            home: "promo",
            routed,
            sent_at: None,
            hint,
        };
        plan(
            &message,
            known,
            &["promo", "news"],
            |_| Some(Policy::default()),
            now(),
        )
    }

    #[test]
    fn a_keyword_concerns_its_program_else_the_short_codes() {
        let p = run("MAU", true, &Known::default(), None);
        assert_eq!(p.program.as_deref(), Some("promo"));
        assert_eq!(p.reply.unwrap().kind, ReplyKind::Welcome);
        let p = run("MAU NEWS", true, &Known::default(), None);
        assert_eq!(p.program.as_deref(), Some("news"));
    }

    #[test]
    fn stop_all_unsubscribes_every_program_with_one_goodbye() {
        let known = Known {
            subscriptions: vec![subscribed("news"), subscribed("old")],
            ..Known::default()
        };
        let p = run("STOP ALL", true, &known, None);
        assert_eq!(p.action, Action::OptOutAll);
        let programs: Vec<&str> = p.changes.iter().map(|c| c.program.as_str()).collect();
        assert_eq!(programs, ["news", "old", "promo"]);
        assert!(p.changes.iter().all(|c| c.to == State::Unsubscribed));
        assert_eq!(p.outcome, Outcome::Applied);
        // "news" sorts first and is configured: its goodbye.
        assert_eq!(p.reply.unwrap().program, "news");
    }

    #[test]
    fn a_message_to_an_unknown_number_changes_nothing_but_a_stop_counts_everywhere() {
        let known = Known {
            subscriptions: vec![subscribed("promo")],
            ..Known::default()
        };
        let p = run("MAU", false, &known, None);
        assert_eq!(
            (p.state, p.outcome, p.reply),
            (None, Outcome::NoChange, None)
        );
        assert!(p.changes.is_empty());
        let p = run("STOP", false, &known, None);
        assert_eq!(p.changes.len(), 2, "{p:?}");
        assert_eq!(p.state, Some(State::Unsubscribed));
    }

    #[test]
    fn a_program_no_longer_configured_is_answered_in_the_home_programs_name() {
        let known = Known {
            subscriptions: vec![subscribed("aaa-gone")],
            ..Known::default()
        };
        let p = run("STOP ALL", true, &known, None);
        assert_eq!(p.changes[0].program, "aaa-gone");
        assert_eq!(p.reply.unwrap().program, "promo");
    }

    #[test]
    fn a_reply_the_gateway_sent_itself_is_not_sent_again() {
        let p = run("STOP", true, &Known::default(), Some(Hint::OptOut));
        assert_eq!(p.state, Some(State::Unsubscribed));
        assert_eq!(p.reply, None);
        // A stop we read in the gateway's START is answered by us.
        let p = run("STOP", true, &Known::default(), Some(Hint::OptIn));
        assert_eq!(p.reply.unwrap().kind, ReplyKind::Goodbye);
    }

    #[test]
    fn a_provider_opt_out_overrides_our_reading_but_keeps_the_program() {
        let c = classifier().classify("hello there");
        assert_eq!(with_hint(c, Some(Hint::OptOut)).action, Action::OptOut);
        let stop_all = classifier().classify("STOP ALL");
        assert_eq!(
            with_hint(stop_all, Some(Hint::OptOut)).action,
            Action::OptOutAll,
            "a broader opt-out is kept"
        );
    }

    #[test]
    fn a_gateway_hint_never_turns_our_opt_out_into_anything_else() {
        for hint in [Hint::OptIn, Hint::Help, Hint::OptOut] {
            for text in ["STOP", "UNSUBSCRIBE", "stop all", "СТОП"] {
                let c = with_hint(classifier().classify(text), Some(hint));
                assert!(
                    c.action.is_opt_out(),
                    "{text} with {hint:?}: {:?}",
                    c.action
                );
            }
        }
    }

    #[test]
    fn only_the_reply_the_gateway_sent_itself_is_left_out() {
        assert!(answered_by_gateway(Hint::OptOut, ReplyKind::Goodbye));
        assert!(answered_by_gateway(Hint::OptIn, ReplyKind::Welcome));
        assert!(!answered_by_gateway(Hint::OptIn, ReplyKind::ConfirmRequest));
        assert!(!answered_by_gateway(Hint::OptIn, ReplyKind::Goodbye));
        assert!(!answered_by_gateway(Hint::Help, ReplyKind::Goodbye));
    }
}
