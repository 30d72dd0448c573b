//! The pure core of keyward: what an inbound SMS means and what to answer.
//!
//! Four steps, all plain functions over plain data — no IO, no database, no
//! clock (the current time is always an argument):
//!
//! 1. [`normalize`] turns raw text into upper-case words (NFKC, no
//!    punctuation, emoji or invisible characters, Latin/Cyrillic look-alikes
//!    folded);
//! 2. a [`Classifier`], built once from the configuration, says what the text
//!    asks for ([`Classification`]: opt-in, confirm, opt-out, opt-out of all,
//!    help or unknown; program, language, keyword, reason), reading a text
//!    that matches no keyword again with letter games respelled, colloquial
//!    Indonesian made standard and Russian words stemmed;
//! 3. [`decide`] runs the per-(number, program) state machine on the facts the
//!    caller loaded and returns a [`Decision`]: next state, the event to
//!    append to the ledger, the reply to queue;
//! 4. [`Replies`] renders that reply in the keyword's language, and
//!    [`encoding`] counts its SMS segments.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use keyward::core::{
//!     decide, Action, Classifier, ClassifierConfig, Facts, Language, Policy, ProgramKeywords,
//!     ReplyKind, ReplyOverrides, ReplyVars, Replies, State,
//! };
//!
//! let classifier = Classifier::new(&ClassifierConfig {
//!     programs: vec![ProgramKeywords { name: "promo".into(), ..Default::default() }],
//! });
//! let c = classifier.classify("mau promo 🙏");
//! assert_eq!(c.action, Action::OptIn);
//! assert_eq!(c.program.as_deref(), Some("promo"));
//! assert_eq!(c.language, Some(Language::Id));
//!
//! let now = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
//! let d = decide(&Facts::default(), &c, &Policy::default(), now);
//! assert_eq!(d.transition, Some((State::None, State::Subscribed)));
//! assert_eq!(d.reply, Some(ReplyKind::Welcome));
//!
//! let lang = Language::Id;
//! let text = Replies::new(&ReplyOverrides::default()).render(
//!     ReplyKind::Welcome,
//!     lang,
//!     &ReplyVars {
//!         brand: "Toko Maju",
//!         program: "promo",
//!         frequency: "2-4 SMS per bulan",
//!         shortcode: "3344",
//!         stop: lang.stop_keyword(),
//!         help: lang.help_keyword(),
//!         start: lang.start_keyword(),
//!     },
//! );
//! assert!(text.contains("balas UNSUBSCRIBE ke 3344"));
//! ```

pub mod classify;
pub mod compose;
pub mod gate;
pub mod keywords;
pub mod machine;
pub mod normalize;
pub mod plan;
pub mod program;
pub mod reply;
pub mod style;
mod understand;
pub mod zones;

pub use classify::{
    Action, Classification, Classifier, ClassifierConfig, ParseActionError, ProgramKeywords, Reason,
};
pub use compose::{
    sanitize_value, stop_sentence, BroadcastVars, MissingVar, Template, TemplateProblem,
    TemplateProblemCode, MAX_VAR_CHARS, MAX_VAR_NAME,
};
pub use gate::{
    decide_send, largest_count_in, largest_number_in, DeferReason, MessageKind, Outbound,
    ParseGateError, Recipient, SendingPolicy, SkipReason, Verdict, Weekdays, Window,
};
pub use keywords::{Language, ParseLanguageError};
pub use machine::{decide, decide_each, Decision, Facts, Outcome, ParseStateError, Policy, State};
pub use normalize::{fold_lookalikes, normalize};
pub use program::ProgramName;
pub use reply::{
    encoding, lint, Encoding, Replies, ReplyKind, ReplyOverrides, ReplyVars, VARIABLES,
};
pub use style::{Finding, FindingCode, StyleKind};
pub use zones::candidate_zones;
