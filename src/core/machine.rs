//! The subscription state machine of one (number, program): a pure,
//! deterministic function from what the caller loaded ([`Facts`]), what the
//! text asks for ([`Classification`]), the [`Policy`] and the current time to
//! a [`Decision`]. It has no clock and no IO; the caller loads the facts,
//! calls [`decide`], appends the transition (if any) to the ledger and queues
//! the reply (if any) in the same transaction.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use keyward::core::{decide, Classifier, ClassifierConfig, Facts, Policy, ReplyKind, State};
//!
//! let classifier = Classifier::new(&ClassifierConfig::default());
//! let now = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
//! let stranger = Facts::default(); // never seen: state none
//! let d = decide(&stranger, &classifier.classify("STOP"), &Policy::default(), now);
//! assert_eq!(d.transition, Some((State::None, State::Unsubscribed)));
//! assert_eq!(d.reply, Some(ReplyKind::Goodbye));
//! ```
//!
//! Rules:
//! - an opt-out from any state (a stranger's too: none → unsubscribed is a
//!   recorded suppression) unsubscribes and says goodbye; while already
//!   unsubscribed, nothing changes and the goodbye is repeated at most once
//!   per `opt_out_reply_cooldown`; an old (out-of-order) opt-out is applied;
//! - an opt-in from none or unsubscribed subscribes (welcome), or asks for
//!   confirmation (pending) under double opt-in; while subscribed it only
//!   answers "already subscribed";
//! - while pending (and younger than `pending_ttl`), a confirmation (`YA`) or
//!   an opt-in (`YES`, `ДА`, `MAU`) subscribes; an expired pending behaves
//!   like none: a confirmation does nothing, a fresh opt-in asks again (an
//!   event pending → pending, so `changed_at` restarts). A pending state
//!   without `changed_at` counts as expired: consent must be recent;
//! - an opt-in or confirmation sent (gateway `sent_at`) before the latest
//!   opt-out is stale: stored by the caller, not applied, not answered;
//! - only an explicit opt-in or confirmation ever leads to subscribed;
//! - help: the help reply, no change;
//! - anything else (including a confirmation with nothing pending): no
//!   change, and the fallback reply at most once per `fallback_cooldown`;
//! - replies that answer no state change (help, already subscribed,
//!   fallback) are not sent when the same text came `loop_threshold` times in
//!   the last hour: that is an auto-responder loop, not a person.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::classify::{Action, Classification};
use super::reply::ReplyKind;

/// Subscription state of one (number, program).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Never subscribed, never opted out.
    #[default]
    None,
    /// Double opt-in asked, not confirmed yet.
    Pending,
    Subscribed,
    Unsubscribed,
}

impl State {
    pub const ALL: [State; 4] = [
        State::None,
        State::Pending,
        State::Subscribed,
        State::Unsubscribed,
    ];
}

crate::labels!(State { None => "none", Pending => "pending", Subscribed => "subscribed", Unsubscribed => "unsubscribed" });

/// Error of parsing a [`State`] from an unknown name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseStateError(pub String);

impl fmt::Display for ParseStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown state {:?} (expected none, pending, subscribed or unsubscribed)",
            self.0
        )
    }
}

impl std::error::Error for ParseStateError {}

impl FromStr for State {
    type Err = ParseStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseStateError(s.to_string()))
    }
}

/// Per-program policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Ask for a confirmation (`YA`/`YES`/`ДА`) before subscribing.
    pub double_opt_in: bool,
    /// How long a pending confirmation stays valid (24 h).
    pub pending_ttl: Duration,
    /// Minimum time between two goodbyes to an already unsubscribed number (24 h).
    pub opt_out_reply_cooldown: Duration,
    /// Minimum time between two fallback replies to one number (24 h).
    pub fallback_cooldown: Duration,
    /// This many identical texts in the last hour make an auto-responder loop (3).
    pub loop_threshold: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            double_opt_in: false,
            pending_ttl: Duration::hours(24),
            opt_out_reply_cooldown: Duration::hours(24),
            fallback_cooldown: Duration::hours(24),
            loop_threshold: 3,
        }
    }
}

/// What the caller loaded for this (number, program) before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    pub state: State,
    /// Time of the last state change.
    pub changed_at: Option<DateTime<Utc>>,
    /// Latest opt-out event (its effective time) of this number and program.
    pub last_opt_out_at: Option<DateTime<Utc>>,
    /// Last opt-out confirmation reply sent or queued to this number.
    pub last_goodbye_at: Option<DateTime<Utc>>,
    /// Last fallback reply sent or queued to this number.
    pub last_fallback_at: Option<DateTime<Utc>>,
    /// Times this number sent this same text, exactly as received, in the
    /// last hour, not counting this one.
    pub same_text_last_hour: u32,
    /// The message's own gateway timestamp, if the gateway gave one.
    pub sent_at: Option<DateTime<Utc>>,
}

/// What happened to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The state changed (see [`Decision::transition`]).
    Applied,
    /// Understood; nothing to change.
    NoChange,
    /// An opt-in or confirmation older than the latest opt-out: stored, not
    /// applied, not answered.
    Stale,
    /// A confirmation for a pending opt-in that has expired: not applied.
    Expired,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Applied,
        Outcome::NoChange,
        Outcome::Stale,
        Outcome::Expired,
    ];
}

crate::labels!(Outcome { Applied => "applied", NoChange => "no_change", Stale => "stale", Expired => "expired" });

/// The result of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The effective action: an opt-in while a confirmation is pending is a
    /// `Confirm`; a confirmation with nothing (valid) pending is `Unknown`.
    pub action: Action,
    pub next_state: State,
    /// `Some((from, to))` when an event must be appended to the ledger: a
    /// state change, a stranger's opt-out (none → unsubscribed), or a renewed
    /// confirmation request after expiry (pending → pending).
    pub transition: Option<(State, State)>,
    pub reply: Option<ReplyKind>,
    pub outcome: Outcome,
}

fn elapsed_at_least(last: Option<DateTime<Utc>>, now: DateTime<Utc>, d: Duration) -> bool {
    match last {
        None => true,
        Some(t) => now.signed_duration_since(t) >= d,
    }
}

fn is_loop(facts: &Facts, policy: &Policy) -> bool {
    facts.same_text_last_hour >= policy.loop_threshold
}

/// Decides what one message means for one (number, program).
pub fn decide(facts: &Facts, c: &Classification, policy: &Policy, now: DateTime<Utc>) -> Decision {
    let state = facts.state;
    let stay = |action: Action, reply: Option<ReplyKind>, outcome: Outcome| Decision {
        action,
        next_state: state,
        transition: None,
        reply,
        outcome,
    };
    let go = |action: Action, to: State, reply: ReplyKind| Decision {
        action,
        next_state: to,
        transition: Some((state, to)),
        reply: Some(reply),
        outcome: Outcome::Applied,
    };
    let quiet_reply = |kind: ReplyKind| (!is_loop(facts, policy)).then_some(kind);
    let unknown = |outcome: Outcome| {
        let fallback = elapsed_at_least(facts.last_fallback_at, now, policy.fallback_cooldown);
        let reply = if fallback {
            quiet_reply(ReplyKind::Fallback)
        } else {
            None
        };
        stay(Action::Unknown, reply, outcome)
    };

    let pending_valid = state == State::Pending
        && facts
            .changed_at
            .is_some_and(|t| now.signed_duration_since(t) < policy.pending_ttl);

    match c.action {
        Action::OptOut | Action::OptOutAll => {
            if state == State::Unsubscribed {
                let again =
                    elapsed_at_least(facts.last_goodbye_at, now, policy.opt_out_reply_cooldown);
                stay(
                    c.action,
                    again.then_some(ReplyKind::Goodbye),
                    Outcome::NoChange,
                )
            } else {
                go(c.action, State::Unsubscribed, ReplyKind::Goodbye)
            }
        }
        Action::OptIn | Action::Confirm => {
            let effective = if pending_valid {
                Action::Confirm
            } else {
                c.action
            };
            let stale = matches!((facts.sent_at, facts.last_opt_out_at), (Some(sent), Some(out)) if sent < out);
            if stale {
                return stay(effective, None, Outcome::Stale);
            }
            match (effective, state) {
                (Action::Confirm, State::Pending) if pending_valid => {
                    go(Action::Confirm, State::Subscribed, ReplyKind::Welcome)
                }
                (Action::Confirm, State::Pending) => unknown(Outcome::Expired),
                (Action::Confirm, _) => unknown(Outcome::NoChange),
                (_, State::Subscribed) => stay(
                    Action::OptIn,
                    quiet_reply(ReplyKind::AlreadySubscribed),
                    Outcome::NoChange,
                ),
                // none, unsubscribed, or an expired pending (behaves like none)
                _ if policy.double_opt_in => {
                    go(Action::OptIn, State::Pending, ReplyKind::ConfirmRequest)
                }
                _ => go(Action::OptIn, State::Subscribed, ReplyKind::Welcome),
            }
        }
        Action::Help => stay(
            Action::Help,
            quiet_reply(ReplyKind::Help),
            Outcome::NoChange,
        ),
        Action::Unknown => unknown(Outcome::NoChange),
    }
}

/// Importance of a reply when one message touches several programs: the
/// confirmation of an opt-out first, then of an opt-in.
fn reply_rank(kind: ReplyKind) -> u8 {
    match kind {
        ReplyKind::Goodbye => 0,
        ReplyKind::Welcome => 1,
        ReplyKind::ConfirmRequest => 2,
        ReplyKind::AlreadySubscribed => 3,
        ReplyKind::Help => 4,
        ReplyKind::Fallback => 5,
    }
}

/// Decides one message for several programs of the same number (an
/// `OptOutAll`, or a message the caller applies to more than one program).
///
/// Each program gets its own decision (and its own event), but at most ONE
/// decision keeps a reply, since the caller sends exactly one reply per
/// inbound message: the most important one (goodbye, welcome, confirmation
/// request, already subscribed, help, fallback), the first in `items` order
/// on a tie.
pub fn decide_each(
    items: &[Facts],
    c: &Classification,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut decisions: Vec<Decision> = items.iter().map(|f| decide(f, c, policy, now)).collect();
    let keep = decisions
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.reply.map(|r| (reply_rank(r), i)))
        .min()
        .map(|(_, i)| i);
    for (i, d) in decisions.iter_mut().enumerate() {
        if Some(i) != keep {
            d.reply = None;
        }
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::classify::Reason;
    use chrono::TimeZone;

    fn at(h: i64) -> DateTime<Utc> {
        // 2026-11-23 00:00 UTC plus h hours: a fixed instant, never the clock.
        Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0)
            .single()
            .map(|t| t + Duration::hours(h))
            .expect("valid fixed instant")
    }

    fn msg(action: Action) -> Classification {
        Classification {
            action,
            program: None,
            language: None,
            keyword: None,
            reason: Reason::ExactKeyword,
        }
    }

    fn facts(state: State, changed_h: i64) -> Facts {
        Facts {
            state,
            changed_at: Some(at(changed_h)),
            ..Facts::default()
        }
    }

    fn double() -> Policy {
        Policy {
            double_opt_in: true,
            ..Policy::default()
        }
    }

    #[test]
    fn opt_in_from_none_subscribes_and_welcomes() {
        let d = decide(
            &Facts::default(),
            &msg(Action::OptIn),
            &Policy::default(),
            at(0),
        );
        assert_eq!(d.next_state, State::Subscribed);
        assert_eq!(d.transition, Some((State::None, State::Subscribed)));
        assert_eq!(d.reply, Some(ReplyKind::Welcome));
        assert_eq!(d.outcome, Outcome::Applied);
        assert_eq!(d.action, Action::OptIn);
    }

    #[test]
    fn opt_in_under_double_opt_in_asks_for_confirmation() {
        let d = decide(&Facts::default(), &msg(Action::OptIn), &double(), at(0));
        assert_eq!(d.transition, Some((State::None, State::Pending)));
        assert_eq!(d.reply, Some(ReplyKind::ConfirmRequest));
    }

    #[test]
    fn confirm_while_pending_subscribes() {
        let d = decide(
            &facts(State::Pending, 0),
            &msg(Action::Confirm),
            &double(),
            at(23),
        );
        assert_eq!(d.transition, Some((State::Pending, State::Subscribed)));
        assert_eq!(d.reply, Some(ReplyKind::Welcome));
        assert_eq!(d.action, Action::Confirm);
    }

    #[test]
    fn an_opt_in_word_while_pending_is_taken_as_the_confirmation() {
        let d = decide(
            &facts(State::Pending, 0),
            &msg(Action::OptIn),
            &double(),
            at(1),
        );
        assert_eq!(d.action, Action::Confirm);
        assert_eq!(d.transition, Some((State::Pending, State::Subscribed)));
        assert_eq!(d.reply, Some(ReplyKind::Welcome));
    }

    #[test]
    fn a_confirm_after_the_pending_expired_does_not_subscribe() {
        let d = decide(
            &facts(State::Pending, 0),
            &msg(Action::Confirm),
            &double(),
            at(24),
        );
        assert_eq!(d.next_state, State::Pending);
        assert_eq!(d.transition, None);
        assert_eq!(d.outcome, Outcome::Expired);
        assert_eq!(d.action, Action::Unknown);
        assert_eq!(d.reply, Some(ReplyKind::Fallback));
    }

    #[test]
    fn a_pending_without_a_change_time_counts_as_expired() {
        let f = Facts {
            state: State::Pending,
            ..Facts::default()
        };
        let d = decide(&f, &msg(Action::Confirm), &double(), at(0));
        assert_eq!(d.outcome, Outcome::Expired);
        assert_eq!(d.transition, None);
    }

    #[test]
    fn a_fresh_opt_in_after_expiry_asks_again() {
        let d = decide(
            &facts(State::Pending, 0),
            &msg(Action::OptIn),
            &double(),
            at(30),
        );
        assert_eq!(d.action, Action::OptIn);
        assert_eq!(d.transition, Some((State::Pending, State::Pending)));
        assert_eq!(d.reply, Some(ReplyKind::ConfirmRequest));
        assert_eq!(d.outcome, Outcome::Applied);
    }

    #[test]
    fn a_confirm_with_nothing_pending_is_treated_as_unknown() {
        for state in [State::None, State::Subscribed, State::Unsubscribed] {
            let d = decide(
                &facts(state, 0),
                &msg(Action::Confirm),
                &Policy::default(),
                at(1),
            );
            assert_eq!(d.action, Action::Unknown, "{state}");
            assert_eq!(d.transition, None, "{state}");
            assert_eq!(d.reply, Some(ReplyKind::Fallback), "{state}");
        }
    }

    #[test]
    fn opt_in_while_subscribed_only_says_already_subscribed() {
        let d = decide(
            &facts(State::Subscribed, 0),
            &msg(Action::OptIn),
            &Policy::default(),
            at(5),
        );
        assert_eq!(d.transition, None);
        assert_eq!(d.outcome, Outcome::NoChange);
        assert_eq!(d.reply, Some(ReplyKind::AlreadySubscribed));
    }

    #[test]
    fn stop_from_a_stranger_is_recorded_and_confirmed_once() {
        let d = decide(
            &Facts::default(),
            &msg(Action::OptOut),
            &Policy::default(),
            at(0),
        );
        assert_eq!(d.transition, Some((State::None, State::Unsubscribed)));
        assert_eq!(d.reply, Some(ReplyKind::Goodbye));

        let again = Facts {
            state: State::Unsubscribed,
            changed_at: Some(at(0)),
            last_opt_out_at: Some(at(0)),
            last_goodbye_at: Some(at(0)),
            ..Facts::default()
        };
        let d = decide(&again, &msg(Action::OptOut), &Policy::default(), at(1));
        assert_eq!(d.transition, None);
        assert_eq!(d.reply, None);
        assert_eq!(d.outcome, Outcome::NoChange);
    }

    #[test]
    fn opt_out_from_every_state_unsubscribes() {
        for state in [State::None, State::Pending, State::Subscribed] {
            for action in [Action::OptOut, Action::OptOutAll] {
                let d = decide(&facts(state, 0), &msg(action), &double(), at(1));
                assert_eq!(d.transition, Some((state, State::Unsubscribed)));
                assert_eq!(d.reply, Some(ReplyKind::Goodbye));
                assert_eq!(d.action, action);
            }
        }
    }

    #[test]
    fn a_repeated_stop_gets_a_goodbye_again_after_the_cooldown() {
        let f = Facts {
            state: State::Unsubscribed,
            changed_at: Some(at(0)),
            last_goodbye_at: Some(at(0)),
            ..Facts::default()
        };
        let early = decide(&f, &msg(Action::OptOut), &Policy::default(), at(23));
        assert_eq!(early.reply, None);
        let late = decide(&f, &msg(Action::OptOut), &Policy::default(), at(24));
        assert_eq!(late.reply, Some(ReplyKind::Goodbye));
        assert_eq!(late.transition, None);
        let never_answered = Facts {
            last_goodbye_at: None,
            ..f
        };
        let d = decide(
            &never_answered,
            &msg(Action::OptOut),
            &Policy::default(),
            at(1),
        );
        assert_eq!(d.reply, Some(ReplyKind::Goodbye));
    }

    #[test]
    fn only_an_explicit_opt_in_leaves_unsubscribed() {
        let f = facts(State::Unsubscribed, 0);
        for action in [
            Action::Help,
            Action::Unknown,
            Action::Confirm,
            Action::OptOut,
        ] {
            let d = decide(&f, &msg(action), &Policy::default(), at(1));
            assert_eq!(d.next_state, State::Unsubscribed, "{action}");
        }
        let d = decide(&f, &msg(Action::OptIn), &Policy::default(), at(1));
        assert_eq!(d.transition, Some((State::Unsubscribed, State::Subscribed)));
    }

    #[test]
    fn help_answers_from_any_state_without_change() {
        for state in State::ALL {
            let d = decide(
                &facts(state, 0),
                &msg(Action::Help),
                &Policy::default(),
                at(1),
            );
            assert_eq!(d.reply, Some(ReplyKind::Help));
            assert_eq!(d.transition, None);
            assert_eq!(d.next_state, state);
        }
    }

    #[test]
    fn unknown_gets_one_fallback_per_cooldown() {
        let f = Facts {
            last_fallback_at: Some(at(0)),
            ..Facts::default()
        };
        assert_eq!(
            decide(&f, &msg(Action::Unknown), &Policy::default(), at(23)).reply,
            None
        );
        assert_eq!(
            decide(&f, &msg(Action::Unknown), &Policy::default(), at(24)).reply,
            Some(ReplyKind::Fallback)
        );
    }

    #[test]
    fn an_auto_responder_loop_gets_no_fallback_or_help() {
        let f = Facts {
            same_text_last_hour: 3,
            ..Facts::default()
        };
        assert_eq!(
            decide(&f, &msg(Action::Unknown), &Policy::default(), at(0)).reply,
            None
        );
        assert_eq!(
            decide(&f, &msg(Action::Help), &Policy::default(), at(0)).reply,
            None
        );
        let below = Facts {
            same_text_last_hour: 2,
            ..f
        };
        assert_eq!(
            decide(&below, &msg(Action::Unknown), &Policy::default(), at(0)).reply,
            Some(ReplyKind::Fallback)
        );
    }

    #[test]
    fn a_loop_never_suppresses_the_confirmation_of_a_state_change() {
        let f = Facts {
            same_text_last_hour: 10,
            ..Facts::default()
        };
        let d = decide(&f, &msg(Action::OptOut), &Policy::default(), at(0));
        assert_eq!(d.reply, Some(ReplyKind::Goodbye));
    }

    #[test]
    fn an_opt_in_sent_before_the_latest_opt_out_is_stale() {
        let f = Facts {
            state: State::Unsubscribed,
            changed_at: Some(at(2)),
            last_opt_out_at: Some(at(2)),
            sent_at: Some(at(1)),
            ..Facts::default()
        };
        let d = decide(&f, &msg(Action::OptIn), &Policy::default(), at(3));
        assert_eq!(d.outcome, Outcome::Stale);
        assert_eq!(d.transition, None);
        assert_eq!(d.reply, None);
        assert_eq!(d.next_state, State::Unsubscribed);

        let newer = Facts {
            sent_at: Some(at(2) + Duration::seconds(1)),
            ..f
        };
        let d = decide(&newer, &msg(Action::OptIn), &Policy::default(), at(3));
        assert_eq!(d.outcome, Outcome::Applied);
    }

    #[test]
    fn an_old_opt_out_is_always_applied() {
        let f = Facts {
            state: State::Subscribed,
            changed_at: Some(at(5)),
            sent_at: Some(at(1)),
            ..Facts::default()
        };
        let d = decide(&f, &msg(Action::OptOut), &Policy::default(), at(6));
        assert_eq!(d.transition, Some((State::Subscribed, State::Unsubscribed)));
    }

    #[test]
    fn an_opt_out_of_all_programs_gets_a_single_goodbye() {
        let items = [
            facts(State::Subscribed, 0),
            facts(State::Subscribed, 0),
            Facts {
                state: State::Unsubscribed,
                ..Facts::default()
            },
        ];
        let ds = decide_each(&items, &msg(Action::OptOutAll), &Policy::default(), at(1));
        assert_eq!(ds.len(), 3);
        assert!(ds.iter().all(|d| d.next_state == State::Unsubscribed));
        assert_eq!(ds.iter().filter(|d| d.transition.is_some()).count(), 2);
        assert_eq!(ds.iter().filter(|d| d.reply.is_some()).count(), 1);
        assert_eq!(ds[0].reply, Some(ReplyKind::Goodbye));
    }

    #[test]
    fn decide_each_keeps_the_most_important_reply() {
        let items = [facts(State::Subscribed, 0), Facts::default()];
        let ds = decide_each(&items, &msg(Action::OptIn), &Policy::default(), at(1));
        assert_eq!(ds[0].reply, None);
        assert_eq!(ds[1].reply, Some(ReplyKind::Welcome));
        assert!(decide_each(&[], &msg(Action::OptIn), &Policy::default(), at(1)).is_empty());
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
        }
        assert!("Subscribed".parse::<State>().is_err());
    }
}
