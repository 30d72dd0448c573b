//! The send gate: whether one outbound message goes to one recipient now,
//! later, or not at all. Every message of every broadcast passes through
//! [`decide_send`], a pure function of the program's [`SendingPolicy`], what
//! the caller loaded about the recipient ([`Recipient`]), the message
//! ([`Outbound`]) and the current time. It has no clock and no IO: the
//! caller records a send when told [`Verdict::Send`], asks again at `until`
//! when told [`Verdict::Defer`], and stores the [`SkipReason`] otherwise.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use keyward::core::gate::{decide_send, DeferReason, MessageKind, Outbound, Recipient, SendingPolicy, Verdict};
//! use keyward::core::zones::candidate_zones;
//!
//! let policy = SendingPolicy::default(); // 4 per 30 days, 72 h apart, 08:00–17:00
//! let now = Utc.with_ymd_and_hms(2026, 11, 23, 20, 0, 0).unwrap(); // 03:00 in Jakarta
//! let to = Recipient { subscribed: true, zones: candidate_zones("+622150001234"), ..Recipient::default() };
//! let message = Outbound { kind: MessageKind::Marketing, not_before: now, valid_until: None };
//! assert_eq!(
//!     decide_send(&policy, &to, &message, now),
//!     Verdict::Defer {
//!         until: Utc.with_ymd_and_hms(2026, 11, 24, 1, 0, 0).unwrap(), // 08:00 WIB
//!         reason: DeferReason::Window,
//!     }
//! );
//! ```
//!
//! Rules, in the order they are applied:
//! - a message this broadcast already sent to this number is skipped
//!   (`duplicate`);
//! - consent first: a recipient not subscribed at this moment is skipped
//!   (`not_subscribed`), whatever the kind of message;
//! - at or after the message's `valid_until` it is skipped (`expired`); a
//!   message without one may wait as long as the rules below need;
//! - marketing only (a [`MessageKind::Notice`] skips this rule and the
//!   next): a recipient who already got `max_messages` marketing messages of
//!   this program in the rolling window `(now − period_days, now]` is
//!   skipped (`cap_reached`) rather than deferred: a broadcast does not pile
//!   up behind the cap. A recorded send later than `now` (a worker whose
//!   clock runs ahead) counts too, so skew never lets a send through;
//! - marketing only: the next one waits until `min_gap_hours` after the
//!   latest marketing send;
//! - a recipient with no candidate zone is skipped (`no_send_time`). The
//!   caller resolves the zones (the subscriber's recorded zone, else the
//!   program's, else [`candidate_zones`](super::zones::candidate_zones) of
//!   the number), so an empty list means nobody knows what hour it is there;
//!   guessing UTC would send at night to half the world;
//! - the message goes at the earliest moment `T ≥ max(now, not_before, gap
//!   end)` that is inside the window, on an allowed weekday and not on a
//!   holiday **in every candidate zone at once** (an Indonesian mobile that
//!   may be in WIB, WITA or WIT gets 08:00–15:00 WIB). `T = now` is
//!   [`Verdict::Send`]; a later `T` before `valid_until` is
//!   [`Verdict::Defer`], whose reason names what `T` waited for last (the
//!   window, else the gap, else `not_before`); `T ≥ valid_until` is
//!   `expired`;
//! - when no moment within the horizon satisfies every zone (the zones'
//!   windows never overlap, as for a Russian mobile that may be in any of
//!   the sixteen zones of +7, from UTC+2 to UTC+12), the message is skipped
//!   (`no_send_time`). The horizon is [`HORIZON_DAYS`] after the earliest
//!   moment, plus seven days for each holiday not already past (a holiday
//!   can cost at most one occurrence of each weekday), so the search always
//!   ends;
//! - a deferral is a promise to ask again, not a reservation: at `until` the
//!   caller asks again with the facts of that moment, and the cap and the
//!   gap are checked anew.
//!
//! Local time, in each zone with chrono-tz, including daylight saving time:
//! - an instant is inside the window in a zone when the zone's wall clock at
//!   that instant reads a time in `[start, end)` (start inclusive, end
//!   exclusive, whole seconds) on a local date that is an allowed weekday and
//!   not a holiday. Holidays are local dates: 25 December in each zone;
//! - a start the clock skips (02:30 on a spring-forward night) opens the
//!   window when the clock jumps past it (at 03:00); a start the clock shows
//!   twice (01:30 on a fall-back night) opens it the first time, and an hour
//!   the clock repeats counts in both passes, so such a window may open
//!   twice that night. A 08:00–17:00 window is not touched by today's
//!   transitions, which happen at night: 08:00 is 08:00 on both sides of
//!   them, only its UTC instant moves.
//!
//! Speed: the common case (now inside the window in every zone, nothing to
//! wait for) converts `now` into each zone once and allocates nothing; only a
//! deferral searches, from window opening to window opening.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveTime, Offset, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::keywords::Language;

/// Days searched for a moment that suits every zone, past the earliest
/// allowed moment, before holidays add theirs. Two weeks see every weekday
/// twice: a weekly pattern that opens at all opens within them, even with a
/// daylight-saving change in between.
pub const HORIZON_DAYS: i64 = 14;

/// The daily sending window, in each recipient zone's local time: from
/// `start` (inclusive) to `end` (exclusive), within one day (`start < end`;
/// a window cannot cross midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Window {
    /// A window from `start` to `end`, refused unless `start < end`.
    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Window, String> {
        let w = Window { start, end };
        w.check().map(|()| w)
    }

    /// Parses `"08:00-17:00"` (hours may have one digit, spaces around the
    /// dash are allowed).
    pub fn parse(text: &str) -> Result<Window, String> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("window {text:?}: expected HH:MM-HH:MM, like 08:00-17:00"))?;
        let time = |part: &str| {
            parse_hh_mm(part.trim()).ok_or_else(|| {
                format!(
                    "window {text:?}: {:?} is not a time of day (HH:MM, 00:00 to 23:59)",
                    part.trim()
                )
            })
        };
        let w = Window {
            start: time(start)?,
            end: time(end)?,
        };
        w.check().map_err(|e| format!("window {text:?}: {e}"))?;
        Ok(w)
    }

    fn check(&self) -> Result<(), String> {
        if self.start < self.end {
            Ok(())
        } else {
            Err(format!(
                "the start ({}) must be before the end ({}): a window cannot be empty or cross midnight",
                hh_mm(self.start),
                hh_mm(self.end)
            ))
        }
    }

    /// Whether a local time of day is inside the window.
    pub fn contains(&self, t: NaiveTime) -> bool {
        self.start <= t && t < self.end
    }
}

impl Default for Window {
    fn default() -> Self {
        Window {
            start: NaiveTime::from_hms_opt(8, 0, 0).expect("08:00 is a time"),
            end: NaiveTime::from_hms_opt(17, 0, 0).expect("17:00 is a time"),
        }
    }
}

fn parse_hh_mm(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.split_once(':')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

fn hh_mm(t: NaiveTime) -> String {
    if t.second() == 0 && t.nanosecond() == 0 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%H:%M:%S").to_string()
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", hh_mm(self.start), hh_mm(self.end))
    }
}

impl FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Window::parse(s)
    }
}

impl TryFrom<String> for Window {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Window::parse(&s)
    }
}

impl From<Window> for String {
    fn from(w: Window) -> String {
        w.to_string()
    }
}

/// A set of weekdays; in configuration, a list of names (`["mon", "tue"]`;
/// chrono's names are accepted too: `"Monday"`, `"FRI"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Weekdays(u8);

const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

impl Weekdays {
    pub const ALL: Weekdays = Weekdays(0b111_1111);
    pub const NONE: Weekdays = Weekdays(0);
    pub const MON_TO_FRI: Weekdays = Weekdays(0b001_1111);

    fn bit(d: Weekday) -> u8 {
        1 << d.num_days_from_monday()
    }

    pub fn contains(self, d: Weekday) -> bool {
        self.0 & Self::bit(d) != 0
    }

    pub fn with(self, d: Weekday) -> Weekdays {
        Weekdays(self.0 | Self::bit(d))
    }

    pub fn without(self, d: Weekday) -> Weekdays {
        Weekdays(self.0 & !Self::bit(d))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The days in the set, Monday first.
    pub fn iter(self) -> impl Iterator<Item = Weekday> {
        WEEK.into_iter().filter(move |&d| self.contains(d))
    }

    /// Membership by days from Monday (0–6), for the hot path.
    fn contains_index(self, from_monday: i64) -> bool {
        self.0 & (1 << from_monday) != 0
    }
}

impl Default for Weekdays {
    fn default() -> Self {
        Weekdays::ALL
    }
}

impl FromIterator<Weekday> for Weekdays {
    fn from_iter<I: IntoIterator<Item = Weekday>>(days: I) -> Self {
        days.into_iter().fold(Weekdays::NONE, Weekdays::with)
    }
}

impl TryFrom<Vec<String>> for Weekdays {
    type Error = String;

    fn try_from(names: Vec<String>) -> Result<Self, Self::Error> {
        names
            .iter()
            .map(|n| {
                n.parse::<Weekday>().map_err(|_| {
                    format!("{n:?} is not a weekday (mon, tue, wed, thu, fri, sat, sun)")
                })
            })
            .collect()
    }
}

impl From<Weekdays> for Vec<String> {
    fn from(days: Weekdays) -> Vec<String> {
        days.iter()
            .map(|d| d.to_string().to_ascii_lowercase())
            .collect()
    }
}

/// How often, and when, a program may send to one subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendingPolicy {
    /// Marketing messages per subscriber in any rolling `period_days` (4).
    pub max_messages: u32,
    /// The cap's rolling period, in days (30).
    pub period_days: u32,
    /// Minimum time between two marketing messages to one subscriber (72 h).
    pub min_gap_hours: u32,
    /// Daily window in the subscriber's local time (08:00–17:00).
    pub window: Window,
    /// Local weekdays on which messages are sent (every day).
    pub days: Weekdays,
    /// Local dates on which nothing is sent.
    pub holidays: Vec<NaiveDate>,
}

impl Default for SendingPolicy {
    fn default() -> Self {
        SendingPolicy {
            max_messages: 4,
            period_days: 30,
            min_gap_hours: 72,
            window: Window::default(),
            days: Weekdays::ALL,
            holidays: Vec::new(),
        }
    }
}

impl SendingPolicy {
    /// Refuses a policy that could never send, or whose cap means nothing;
    /// says every problem at once.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.max_messages == 0 {
            problems.push("max_messages must be at least 1".to_string());
        }
        if self.period_days == 0 {
            problems.push("period_days must be at least 1".to_string());
        }
        if let Err(e) = self.window.check() {
            problems.push(format!("window: {e}"));
        }
        if self.days.is_empty() {
            problems.push("days must name at least one weekday".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The frequency the welcome message promises, derived from the cap so
    /// that it cannot say otherwise: "maks. 4 SMS per 30 hari", "up to 4
    /// msgs per 30 days", "до 4 SMS за 30 дней".
    pub fn frequency_text(&self, lang: Language) -> String {
        let (n, days) = (self.max_messages, self.period_days);
        match lang {
            Language::Id if days == 1 => format!("maks. {n} SMS per hari"),
            Language::Id => format!("maks. {n} SMS per {days} hari"),
            Language::En => {
                let msgs = if n == 1 { "msg" } else { "msgs" };
                if days == 1 {
                    format!("up to {n} {msgs} per day")
                } else {
                    format!("up to {n} {msgs} per {days} days")
                }
            }
            Language::Ru if days == 1 => format!("до {n} SMS в день"),
            Language::Ru => format!("до {n} SMS за {days} {}", russian_days(days)),
        }
    }

    /// Refuses a frequency text (written by hand in the configuration) that
    /// names more messages than the cap allows: "2-4 SMS per bulan" with a
    /// cap of 3. Numbers that count time ("30 hari", "per 2 weeks") are not
    /// message counts and are not compared; see [`largest_count_in`].
    pub fn check_frequency_text(&self, text: &str) -> Result<(), String> {
        match largest_count_in(text) {
            Some(n) if n > self.max_messages => Err(format!(
                "frequency text {text:?} names {n} messages, more than the cap of {} per {} days",
                self.max_messages, self.period_days
            )),
            _ => Ok(()),
        }
    }
}

/// "день", "дня" or "дней" after a number, as Russian agrees them.
fn russian_days(n: u32) -> &'static str {
    match (n % 10, n % 100) {
        (1, r) if r != 11 => "день",
        (2..=4, r) if !(12..=14).contains(&r) => "дня",
        _ => "дней",
    }
}

/// Every number written in ASCII digits in `text`, with the text after it.
/// A number too large for `u32` counts as `u32::MAX`: it is surely too many.
fn numbers_in(text: &str) -> impl Iterator<Item = (u32, &str)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == bytes.len() {
            return None;
        }
        let mut n: u32 = 0;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            n = n
                .saturating_mul(10)
                .saturating_add(u32::from(bytes[i] - b'0'));
            i += 1;
        }
        // i stops after an ASCII digit, so it is on a char boundary.
        Some((n, &text[i..]))
    })
}

/// The largest number written in ASCII digits in `text` ("2-4 SMS per
/// bulan" → 4), or `None` when it names none. Numbers spelled as words
/// ("empat", "four") are not read.
pub fn largest_number_in(text: &str) -> Option<u32> {
    numbers_in(text).map(|(n, _)| n).max()
}

/// Words that make the number before them a length of time, not a count of
/// messages (matched as the start of the next word, lower-cased).
const TIME_UNITS: &[&str] = &[
    "hour",
    "day",
    "week",
    "month",
    "year", // en
    "jam",
    "hari",
    "minggu",
    "pekan",
    "bulan",
    "tahun", // id
    "час",
    "сут",
    "ден",
    "дн",
    "недел",
    "месяц",
    "год",
    "лет", // ru
];

fn counts_time(after_number: &str) -> bool {
    let word: String = after_number
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect();
    TIME_UNITS.iter().any(|unit| word.starts_with(unit))
}

/// Like [`largest_number_in`], leaving out numbers followed by a unit of
/// time ("30 hari", "2 weeks", "30 дней"): the largest count of messages a
/// frequency text names. "maks. 4 SMS per 30 hari" → 4.
pub fn largest_count_in(text: &str) -> Option<u32> {
    numbers_in(text)
        .filter(|(_, rest)| !counts_time(rest))
        .map(|(n, _)| n)
        .max()
}

/// Error of parsing one of the gate's names ([`MessageKind`],
/// [`DeferReason`], [`SkipReason`]) from text that is none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseGateError {
    pub what: &'static str,
    pub name: String,
    pub expected: &'static str,
}

impl fmt::Display for ParseGateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?} (expected {})",
            self.what, self.name, self.expected
        )
    }
}

impl std::error::Error for ParseGateError {}

/// Parses `s` as the one of `all` whose `as_str` it is.
fn parse_name<T: Copy>(
    all: &[T],
    as_str: fn(T) -> &'static str,
    s: &str,
    what: &'static str,
    expected: &'static str,
) -> Result<T, ParseGateError> {
    all.iter()
        .copied()
        .find(|&x| as_str(x) == s)
        .ok_or_else(|| ParseGateError {
            what,
            name: s.to_string(),
            expected,
        })
}

/// What a message is, which decides the rules it is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A promotion: counts toward the cap and the gap.
    Marketing,
    /// An important notice or a reminder: consent, window and expiry apply,
    /// the cap and the gap do not.
    Notice,
}

impl MessageKind {
    pub const ALL: [MessageKind; 2] = [MessageKind::Marketing, MessageKind::Notice];
}

crate::labels_no_display!(MessageKind { Marketing => "marketing", Notice => "notice" });

/// Why a message waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeferReason {
    /// Outside the window, on a day off or a holiday, in some candidate zone.
    Window,
    /// Too soon after the recipient's previous marketing message.
    Gap,
    /// Before the broadcast's own start (`not_before`).
    NotBefore,
}

impl DeferReason {
    pub const ALL: [DeferReason; 3] = [
        DeferReason::Window,
        DeferReason::Gap,
        DeferReason::NotBefore,
    ];
}

crate::labels_no_display!(DeferReason { Window => "window", Gap => "gap", NotBefore => "not_before" });

/// Why a message is not sent to this recipient at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    NotSubscribed,
    /// `max_messages` marketing messages in the last `period_days` already.
    CapReached,
    /// Its `valid_until` passed, or would pass before it could be sent.
    Expired,
    /// No moment suits every candidate zone, or no zone is known.
    NoSendTime,
    /// This broadcast already went to this number.
    Duplicate,
}

impl SkipReason {
    pub const ALL: [SkipReason; 5] = [
        SkipReason::NotSubscribed,
        SkipReason::CapReached,
        SkipReason::Expired,
        SkipReason::NoSendTime,
        SkipReason::Duplicate,
    ];
}

crate::labels_no_display!(SkipReason { NotSubscribed => "not_subscribed", CapReached => "cap_reached", Expired => "expired", NoSendTime => "no_send_time", Duplicate => "duplicate" });

macro_rules! named {
    ($t:ty, $what:literal, $expected:literal) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $t {
            type Err = ParseGateError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_name(&<$t>::ALL, <$t>::as_str, s, $what, $expected)
            }
        }
    };
}

named!(MessageKind, "message kind", "marketing or notice");
named!(DeferReason, "defer reason", "window, gap or not_before");
named!(
    SkipReason,
    "skip reason",
    "not_subscribed, cap_reached, expired, no_send_time or duplicate"
);

/// What the caller loaded about one recipient, for one message, at the
/// moment of deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recipient<'a> {
    /// Subscribed to this program at this moment.
    pub subscribed: bool,
    /// Candidate time zones, resolved by the caller: the subscriber's
    /// recorded zone, else the program's, else
    /// [`candidate_zones`](super::zones::candidate_zones) of the number.
    pub zones: &'a [Tz],
    /// Times of the previous marketing sends of this program to this
    /// number, in any order, covering at least the last `period_days` (and
    /// `min_gap_hours`, for a policy whose gap is longer than its period).
    pub marketing_sent: &'a [DateTime<Utc>],
    /// This broadcast already went to this number.
    pub already_sent: bool,
}

/// The message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbound {
    pub kind: MessageKind,
    /// Not sent before this moment: the broadcast's `send_at`, or its
    /// creation time.
    pub not_before: DateTime<Utc>,
    /// Not sent at or after this moment. The API requires one for marketing;
    /// without one the message may wait as long as the rules need.
    pub valid_until: Option<DateTime<Utc>>,
}

/// The result of [`decide_send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Send,
    /// Ask again at `until` (always later than `now`).
    Defer {
        until: DateTime<Utc>,
        reason: DeferReason,
    },
    Skip(SkipReason),
}

/// Decides whether `message` goes to `to` now, later or never (see the
/// module's rules).
pub fn decide_send(
    policy: &SendingPolicy,
    to: &Recipient<'_>,
    message: &Outbound,
    now: DateTime<Utc>,
) -> Verdict {
    use Verdict::Skip;
    if to.already_sent {
        return Skip(SkipReason::Duplicate);
    }
    if !to.subscribed {
        return Skip(SkipReason::NotSubscribed);
    }
    let expired_at = |t: DateTime<Utc>| message.valid_until.is_some_and(|v| t >= v);
    if expired_at(now) {
        return Skip(SkipReason::Expired);
    }

    // The earliest moment the rules other than the window allow, and the
    // rule that set it.
    let mut earliest = now;
    let mut waits_for = DeferReason::Window;
    if message.not_before > now {
        earliest = message.not_before;
        waits_for = DeferReason::NotBefore;
    }
    if message.kind == MessageKind::Marketing {
        match gap_end(policy, to.marketing_sent, now) {
            Err(skip) => return Skip(skip),
            Ok(Some(end)) if end > now && end >= earliest => {
                earliest = end;
                waits_for = DeferReason::Gap;
            }
            Ok(_) => {}
        }
    }
    if to.zones.is_empty() {
        return Skip(SkipReason::NoSendTime);
    }

    let rules = Rules::new(policy);
    if earliest == now && to.zones.iter().all(|&tz| rules.is_open(tz, now)) {
        return Verdict::Send;
    }
    let Some(t) = rules.first_open_everywhere(to.zones, earliest) else {
        return Skip(SkipReason::NoSendTime);
    };
    if t == now {
        Verdict::Send
    } else if expired_at(t) {
        Skip(SkipReason::Expired)
    } else {
        Verdict::Defer {
            until: t,
            reason: if t > earliest {
                DeferReason::Window
            } else {
                waits_for
            },
        }
    }
}

/// The cap and the gap of a marketing message: `Err(CapReached)`, or when
/// the gap after the latest send ends (`None`: no previous send).
fn gap_end(
    policy: &SendingPolicy,
    sent: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, SkipReason> {
    // A period reaching before the first representable instant counts every send.
    let since = now.checked_sub_signed(Duration::days(policy.period_days.into()));
    let mut in_period: u64 = 0;
    let mut latest = None;
    for &t in sent {
        if since.is_none_or(|s| t > s) {
            in_period += 1;
        }
        latest = latest.max(Some(t));
    }
    if in_period >= u64::from(policy.max_messages) {
        return Err(SkipReason::CapReached);
    }
    latest
        .map(|t| {
            // A gap that ends past the representable future never ends.
            t.checked_add_signed(Duration::hours(policy.min_gap_hours.into()))
                .ok_or(SkipReason::NoSendTime)
        })
        .transpose()
}

const DAY: i64 = 86_400;
/// `NaiveDate::num_days_from_ce` of 1970-01-01: local days are counted from it.
const EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// The window and days of a policy, in seconds, for checking instants.
struct Rules<'p> {
    start: i64,
    end: i64,
    days: Weekdays,
    holidays: &'p [NaiveDate],
}

/// The zone's offset from UTC at a Unix time, in seconds; `None` beyond the
/// representable range.
fn offset_at(tz: Tz, ts: i64) -> Option<i64> {
    let utc = DateTime::from_timestamp(ts, 0)?.naive_utc();
    Some(
        tz.offset_from_utc_datetime(&utc)
            .fix()
            .local_minus_utc()
            .into(),
    )
}

impl<'p> Rules<'p> {
    fn new(policy: &'p SendingPolicy) -> Self {
        Rules {
            start: policy.window.start.num_seconds_from_midnight().into(),
            end: policy.window.end.num_seconds_from_midnight().into(),
            days: policy.days,
            holidays: &policy.holidays,
        }
    }

    /// Whether a local day (days since 1970-01-01) is a sending day.
    fn day_allowed(&self, day: i64) -> bool {
        // 1970-01-01 was a Thursday: three days after a Monday.
        self.days.contains_index((day + 3).rem_euclid(7))
            && !self
                .holidays
                .iter()
                .any(|h| i64::from(h.num_days_from_ce()) - EPOCH_DAYS_FROM_CE == day)
    }

    /// Whether a local reading (seconds since 1970-01-01 on the wall clock)
    /// is inside the window on a sending day.
    fn reading_open(&self, local: i64) -> bool {
        let second = local.rem_euclid(DAY);
        self.start <= second && second < self.end && self.day_allowed(local.div_euclid(DAY))
    }

    /// The hot path: is `t` inside the window in `tz`?
    fn is_open(&self, tz: Tz, t: DateTime<Utc>) -> bool {
        let offset = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        self.reading_open(t.timestamp() + i64::from(offset.local_minus_utc()))
    }

    /// `None` when `ts` is inside the window in `tz`; otherwise a later
    /// instant that is no later than the first one that is (the caller asks
    /// again from there). `Some(i64::MAX)` when the answer is out of range.
    fn next_open(&self, tz: Tz, ts: i64) -> Option<i64> {
        let Some(offset) = offset_at(tz, ts) else {
            return Some(i64::MAX);
        };
        let local = ts + offset;
        if self.reading_open(local) {
            return None;
        }
        let day = local.div_euclid(DAY);
        let opening = if self.day_allowed(day) && local.rem_euclid(DAY) < self.start {
            day * DAY + self.start
        } else {
            (day + 1) * DAY + self.start
        };
        // Where the clock would read `opening` if the offset stayed; a later
        // day that is not a sending day is skipped on the next call.
        let at = opening - offset;
        match offset_at(tz, at) {
            Some(o) if o == offset => Some(at),
            // The offset changes first: nothing before the change is open
            // (the clock runs steadily until then), so continue from the
            // change. Steps span at most a day or so, in which real zones
            // change their offset at most once.
            Some(_) => Some(first_change(tz, ts, at, offset)),
            None => Some(i64::MAX),
        }
    }

    /// The first instant at or after `from` inside the window in every zone,
    /// within the horizon.
    fn first_open_everywhere(&self, zones: &[Tz], from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let first_day = from.date_naive().pred_opt().unwrap_or(NaiveDate::MIN);
        let holidays_ahead = self.holidays.iter().filter(|&&h| h >= first_day).count();
        let horizon_days = HORIZON_DAYS.saturating_add(7 * holidays_ahead as i64);
        let limit = Duration::try_days(horizon_days)
            .and_then(|h| from.checked_add_signed(h))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
            .timestamp();
        // Each round moves `t` to the latest of the zones' next openings, so
        // it never passes the answer and always moves forward.
        let mut t = from;
        loop {
            let ts = t.timestamp();
            if ts > limit {
                return None;
            }
            let next = zones.iter().filter_map(|&tz| self.next_open(tz, ts)).max();
            match next {
                None => return Some(t),
                Some(n) => t = DateTime::from_timestamp(n, 0)?,
            }
        }
    }
}

/// The first second after `lo` at which `tz`'s offset differs from
/// `offset`, given that it is `offset` at `lo` and not at `hi`.
fn first_change(tz: Tz, mut lo: i64, mut hi: i64, offset: i64) -> i64 {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(tz, mid) == Some(offset) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::zones::candidate_zones;
    use chrono_tz::America::New_York;
    use chrono_tz::Asia::{Jakarta, Jayapura, Makassar};

    const INDONESIA: &[Tz] = &[Jakarta, Makassar, Jayapura];

    /// A wall-clock time in a zone, as a UTC instant (fixed, never the clock).
    fn at(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .expect("a wall-clock time that exists")
            .with_timezone(&Utc)
    }

    /// Monday 2026-11-23 in Jakarta (WIB, UTC+7).
    fn wib(d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        at(Jakarta, 2026, 11, d, h, mi)
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        at(Tz::UTC, y, mo, d, h, mi)
    }

    fn marketing(now: DateTime<Utc>) -> Outbound {
        Outbound {
            kind: MessageKind::Marketing,
            not_before: now,
            valid_until: None,
        }
    }

    fn notice(now: DateTime<Utc>) -> Outbound {
        Outbound {
            kind: MessageKind::Notice,
            ..marketing(now)
        }
    }

    fn subscriber(zones: &[Tz]) -> Recipient<'_> {
        Recipient {
            subscribed: true,
            zones,
            ..Recipient::default()
        }
    }

    fn decide(to: &Recipient<'_>, message: &Outbound, now: DateTime<Utc>) -> Verdict {
        decide_send(&SendingPolicy::default(), to, message, now)
    }

    fn defer(until: DateTime<Utc>, reason: DeferReason) -> Verdict {
        Verdict::Defer { until, reason }
    }

    fn skip(reason: SkipReason) -> Verdict {
        Verdict::Skip(reason)
    }

    // Consent, duplicates and expiry

    #[test]
    fn a_duplicate_is_skipped_before_anything_else() {
        let now = wib(23, 10, 0);
        let to = Recipient {
            already_sent: true,
            subscribed: false,
            ..subscriber(&[Jakarta])
        };
        assert_eq!(
            decide(&to, &marketing(now), now),
            skip(SkipReason::Duplicate)
        );
    }

    #[test]
    fn consent_comes_first_a_recipient_not_subscribed_is_skipped_whatever_the_message() {
        let now = wib(23, 10, 0);
        let to = Recipient {
            subscribed: false,
            ..subscriber(&[Jakarta])
        };
        let expired = Outbound {
            valid_until: Some(now),
            ..notice(now)
        };
        for m in [marketing(now), notice(now), expired] {
            assert_eq!(decide(&to, &m, now), skip(SkipReason::NotSubscribed));
        }
    }

    #[test]
    fn a_message_at_or_after_its_valid_until_is_expired() {
        let now = wib(23, 10, 0);
        let to = subscriber(&[Jakarta]);
        let until = |v| Outbound {
            valid_until: Some(v),
            ..marketing(now)
        };
        assert_eq!(decide(&to, &until(now), now), skip(SkipReason::Expired));
        assert_eq!(
            decide(&to, &until(now - Duration::hours(1)), now),
            skip(SkipReason::Expired)
        );
        assert_eq!(
            decide(&to, &until(now + Duration::seconds(1)), now),
            Verdict::Send
        );
    }

    #[test]
    fn a_deferral_that_would_land_at_or_after_valid_until_is_expired_instead() {
        let now = wib(23, 3, 0);
        let to = subscriber(&[Jakarta]);
        let until = |v| Outbound {
            valid_until: Some(v),
            ..marketing(now)
        };
        assert_eq!(
            decide(&to, &until(wib(23, 8, 0)), now),
            skip(SkipReason::Expired)
        );
        assert_eq!(
            decide(&to, &until(wib(23, 8, 0) + Duration::seconds(1)), now),
            defer(wib(23, 8, 0), DeferReason::Window)
        );
    }

    // Zones and the window

    #[test]
    fn inside_the_window_in_every_zone_a_message_is_sent_now() {
        let now = wib(23, 10, 0);
        assert_eq!(
            decide(&subscriber(&[Jakarta]), &marketing(now), now),
            Verdict::Send
        );
    }

    #[test]
    fn at_03_00_wib_a_message_is_deferred_to_08_00() {
        let now = wib(23, 3, 0);
        assert_eq!(
            decide(&subscriber(&[Jakarta]), &marketing(now), now),
            defer(wib(23, 8, 0), DeferReason::Window)
        );
    }

    #[test]
    fn the_window_includes_its_start_and_excludes_its_end() {
        let to = subscriber(&[Jakarta]);
        let second = Duration::seconds(1);
        let cases = [
            (
                wib(23, 8, 0) - second,
                defer(wib(23, 8, 0), DeferReason::Window),
            ),
            (wib(23, 8, 0), Verdict::Send),
            (wib(23, 17, 0) - second, Verdict::Send),
            (wib(23, 17, 0), defer(wib(24, 8, 0), DeferReason::Window)),
        ];
        for (now, expected) in cases {
            assert_eq!(decide(&to, &marketing(now), now), expected, "{now}");
        }
    }

    #[test]
    fn an_indonesian_mobile_is_sent_only_when_08_17_holds_in_wib_wita_and_wit() {
        // 08:00 WIB is 10:00 WIT, and 17:00 WIT is 15:00 WIB: 08:00–15:00 WIB.
        let to = subscriber(INDONESIA);
        let cases = [
            (wib(23, 6, 0), defer(wib(23, 8, 0), DeferReason::Window)),
            (wib(23, 8, 0), Verdict::Send),
            (wib(23, 14, 59), Verdict::Send),
            (wib(23, 15, 0), defer(wib(24, 8, 0), DeferReason::Window)),
        ];
        for (now, expected) in cases {
            assert_eq!(decide(&to, &marketing(now), now), expected, "{now}");
        }
    }

    #[test]
    fn a_russian_mobile_whose_zones_never_share_daytime_has_no_send_time() {
        let zones = candidate_zones("+79161234567");
        assert!(zones.len() >= 11);
        for now in [wib(23, 10, 0), utc(2026, 6, 15, 5, 0)] {
            assert_eq!(
                decide(&subscriber(zones), &notice(now), now),
                skip(SkipReason::NoSendTime),
                "{now}"
            );
        }
        // A Moscow landline is one zone and gets its messages.
        let moscow = candidate_zones("+74951234567");
        let now = at(chrono_tz::Europe::Moscow, 2026, 11, 23, 12, 0);
        assert_eq!(
            decide(&subscriber(moscow), &notice(now), now),
            Verdict::Send
        );
    }

    #[test]
    fn a_recipient_with_no_candidate_zone_has_no_send_time() {
        let now = wib(23, 10, 0);
        assert_eq!(
            decide(&subscriber(&[]), &notice(now), now),
            skip(SkipReason::NoSendTime)
        );
    }

    #[test]
    fn nothing_is_sent_on_a_day_off_in_the_recipients_zone() {
        let policy = SendingPolicy {
            days: Weekdays::MON_TO_FRI,
            ..SendingPolicy::default()
        };
        let saturday = wib(21, 10, 0);
        assert_eq!(
            decide_send(
                &policy,
                &subscriber(&[Jakarta]),
                &marketing(saturday),
                saturday
            ),
            defer(wib(23, 8, 0), DeferReason::Window)
        );
    }

    #[test]
    fn a_holiday_is_a_local_date_in_each_zone() {
        let policy = SendingPolicy {
            window: Window::parse("00:00-23:59").unwrap(),
            holidays: vec![NaiveDate::from_ymd_opt(2026, 12, 25).unwrap()],
            ..SendingPolicy::default()
        };
        let to = subscriber(&[Jakarta]);
        // 18:00 UTC on the 24th is already 01:00 on the 25th in Jakarta...
        let now = utc(2026, 12, 24, 18, 0);
        let boxing_day = at(Jakarta, 2026, 12, 26, 0, 0);
        assert_eq!(
            decide_send(&policy, &to, &marketing(now), now),
            defer(boxing_day, DeferReason::Window)
        );
        // ...and 17:00 UTC on the 25th is the 26th there: sent.
        assert_eq!(boxing_day, utc(2026, 12, 25, 17, 0));
        assert_eq!(
            decide_send(&policy, &to, &marketing(boxing_day), boxing_day),
            Verdict::Send
        );
    }

    #[test]
    fn holidays_lengthen_the_search_so_a_late_opening_is_still_found() {
        // Only Mondays, and the next three Mondays are holidays: the fourth.
        let mondays = [23, 30].map(|d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap());
        let policy = SendingPolicy {
            days: Weekdays::NONE.with(Weekday::Mon),
            holidays: [
                mondays[0],
                mondays[1],
                NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
            ]
            .to_vec(),
            ..SendingPolicy::default()
        };
        let now = wib(23, 10, 0);
        assert_eq!(
            decide_send(&policy, &subscriber(&[Jakarta]), &marketing(now), now),
            defer(at(Jakarta, 2026, 12, 14, 8, 0), DeferReason::Window)
        );
    }

    #[test]
    fn the_search_outlasts_any_list_of_holidays() {
        // Each holiday adds a week to the horizon, so 400 closed Mondays in a
        // row still leave the 401st.
        let first_monday = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let policy = SendingPolicy {
            days: Weekdays::NONE.with(Weekday::Mon),
            holidays: (0..400)
                .map(|w| first_monday + Duration::weeks(w))
                .collect(),
            ..SendingPolicy::default()
        };
        let now = wib(23, 10, 0);
        assert_eq!(
            decide_send(&policy, &subscriber(INDONESIA), &marketing(now), now),
            defer(at(Jakarta, 2034, 7, 24, 8, 0), DeferReason::Window)
        );
    }

    // The cap and the gap

    #[test]
    fn a_recipient_at_their_cap_is_skipped() {
        let now = wib(23, 10, 0);
        let sent = [25, 20, 12, 5].map(|days| now - Duration::days(days));
        let to = Recipient {
            marketing_sent: &sent,
            ..subscriber(&[Jakarta])
        };
        assert_eq!(
            decide(&to, &marketing(now), now),
            skip(SkipReason::CapReached)
        );
        let below = Recipient {
            marketing_sent: &sent[1..],
            ..to
        };
        assert_eq!(decide(&below, &marketing(now), now), Verdict::Send);
    }

    #[test]
    fn a_send_exactly_one_period_ago_no_longer_counts() {
        let now = wib(23, 10, 0);
        let sent = [30, 20, 12, 5].map(|days| now - Duration::days(days));
        let to = Recipient {
            marketing_sent: &sent,
            ..subscriber(&[Jakarta])
        };
        assert_eq!(decide(&to, &marketing(now), now), Verdict::Send);
        let a_second_later = [now - Duration::days(30) + Duration::seconds(1)];
        let with_it = [&sent[1..], &a_second_later].concat();
        let to = Recipient {
            marketing_sent: &with_it,
            ..to
        };
        assert_eq!(
            decide(&to, &marketing(now), now),
            skip(SkipReason::CapReached)
        );
    }

    #[test]
    fn a_send_recorded_later_than_now_still_counts() {
        // Another worker's clock runs ahead: its send must not be forgotten.
        let now = wib(23, 10, 0);
        let sent = [20, 12, 5].map(|days| now - Duration::days(days));
        let ahead = [&sent[..], &[now + Duration::seconds(2)]].concat();
        let to = Recipient {
            marketing_sent: &ahead,
            ..subscriber(&[Jakarta])
        };
        assert_eq!(
            decide(&to, &marketing(now), now),
            skip(SkipReason::CapReached)
        );
    }

    #[test]
    fn within_the_gap_the_next_marketing_message_waits_until_it_ends() {
        let now = wib(23, 10, 0);
        let sent = [wib(21, 10, 0)]; // Saturday: 48 h ago
        let to = Recipient {
            marketing_sent: &sent,
            ..subscriber(&[Jakarta])
        };
        assert_eq!(
            decide(&to, &marketing(now), now),
            defer(wib(24, 10, 0), DeferReason::Gap)
        );
        let later = wib(24, 10, 0);
        assert_eq!(decide(&to, &marketing(later), later), Verdict::Send);
    }

    #[test]
    fn a_gap_that_ends_at_night_waits_for_the_morning() {
        let policy = SendingPolicy {
            min_gap_hours: 80,
            ..SendingPolicy::default()
        };
        let now = wib(23, 10, 0);
        let sent = [wib(21, 10, 0)]; // + 80 h = Tuesday 18:00 WIB
        let to = Recipient {
            marketing_sent: &sent,
            ..subscriber(&[Jakarta])
        };
        assert_eq!(
            decide_send(&policy, &to, &marketing(now), now),
            defer(wib(25, 8, 0), DeferReason::Window)
        );
    }

    #[test]
    fn a_notice_ignores_the_cap_and_the_gap() {
        let now = wib(23, 10, 0);
        let sent = [now - Duration::hours(1); 10];
        let to = Recipient {
            marketing_sent: &sent,
            ..subscriber(&[Jakarta])
        };
        assert_eq!(decide(&to, &notice(now), now), Verdict::Send);
        assert_eq!(
            decide(&to, &marketing(now), now),
            skip(SkipReason::CapReached)
        );
    }

    #[test]
    fn a_notice_still_waits_for_the_window_and_can_expire() {
        let now = wib(23, 3, 0);
        let to = subscriber(&[Jakarta]);
        assert_eq!(
            decide(&to, &notice(now), now),
            defer(wib(23, 8, 0), DeferReason::Window)
        );
        let short = Outbound {
            valid_until: Some(wib(23, 7, 0)),
            ..notice(now)
        };
        assert_eq!(decide(&to, &short, now), skip(SkipReason::Expired));
    }

    // not_before

    #[test]
    fn a_message_is_not_sent_before_its_not_before() {
        let now = wib(23, 10, 0);
        let to = subscriber(&[Jakarta]);
        let later = |t| Outbound {
            not_before: t,
            ..marketing(now)
        };
        assert_eq!(
            decide(&to, &later(wib(23, 12, 0)), now),
            defer(wib(23, 12, 0), DeferReason::NotBefore)
        );
        // A start at night waits for the morning: the window is what it waits for last.
        assert_eq!(
            decide(&to, &later(wib(23, 20, 0)), now),
            defer(wib(24, 8, 0), DeferReason::Window)
        );
        // A start in the past changes nothing.
        assert_eq!(decide(&to, &later(wib(22, 12, 0)), now), Verdict::Send);
    }

    #[test]
    fn a_gap_ending_after_not_before_is_what_the_message_waits_for() {
        let now = wib(23, 10, 0);
        let sent = [wib(21, 10, 0)];
        let to = Recipient {
            marketing_sent: &sent,
            ..subscriber(&[Jakarta])
        };
        let m = Outbound {
            not_before: wib(23, 12, 0),
            ..marketing(now)
        };
        assert_eq!(
            decide(&to, &m, now),
            defer(wib(24, 10, 0), DeferReason::Gap)
        );
    }

    // Daylight saving time: New York springs forward on 2026-03-08 and falls
    // back on 2026-11-01, both at 02:00 local.

    #[test]
    fn on_the_spring_forward_day_a_deferral_from_03_00_lands_on_08_00_edt() {
        let to = subscriber(&[New_York]);
        let three = at(New_York, 2026, 3, 8, 3, 0);
        assert_eq!(three, utc(2026, 3, 8, 7, 0));
        let eight = utc(2026, 3, 8, 12, 0); // 08:00 EDT
        assert_eq!(eight, at(New_York, 2026, 3, 8, 8, 0));
        assert_eq!(
            decide(&to, &marketing(three), three),
            defer(eight, DeferReason::Window)
        );
        // From before the jump (01:30 EST) too: not 08:00 EST, which is 09:00 EDT.
        let before = at(New_York, 2026, 3, 8, 1, 30);
        assert_eq!(
            decide(&to, &marketing(before), before),
            defer(eight, DeferReason::Window)
        );
    }

    #[test]
    fn on_the_fall_back_day_a_deferral_lands_on_08_00_est() {
        let to = subscriber(&[New_York]);
        let eight = utc(2026, 11, 1, 13, 0); // 08:00 EST
        assert_eq!(eight, at(New_York, 2026, 11, 1, 8, 0));
        // 01:30 happens twice: 05:30 UTC (EDT) and 06:30 UTC (EST).
        for now in [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)] {
            assert_eq!(
                decide(&to, &marketing(now), now),
                defer(eight, DeferReason::Window),
                "{now}"
            );
        }
    }

    #[test]
    fn the_same_utc_hour_is_inside_the_window_on_one_side_of_a_change_and_not_the_other() {
        let to = subscriber(&[New_York]);
        // 12:30 UTC is 07:30 EST on Saturday, 08:30 EDT on Monday.
        let saturday = utc(2026, 3, 7, 12, 30);
        assert_eq!(
            decide(&to, &marketing(saturday), saturday),
            defer(utc(2026, 3, 7, 13, 0), DeferReason::Window)
        );
        let monday = utc(2026, 3, 9, 12, 30);
        assert_eq!(decide(&to, &marketing(monday), monday), Verdict::Send);
        // 16:30 EDT on the Saturday before falling back is 20:30 UTC; the
        // window then closes at 22:00 UTC, no longer 21:00.
        let before = utc(2026, 10, 31, 20, 59);
        assert_eq!(decide(&to, &marketing(before), before), Verdict::Send);
        let after = utc(2026, 11, 2, 21, 59);
        assert_eq!(decide(&to, &marketing(after), after), Verdict::Send);
        let closed = utc(2026, 10, 31, 21, 0);
        assert_eq!(
            decide(&to, &marketing(closed), closed),
            defer(utc(2026, 11, 1, 13, 0), DeferReason::Window)
        );
    }

    #[test]
    fn a_window_start_the_clock_skips_opens_when_the_clock_jumps_past_it() {
        let policy = SendingPolicy {
            window: Window::parse("02:30-05:00").unwrap(),
            ..SendingPolicy::default()
        };
        let now = at(New_York, 2026, 3, 8, 1, 0); // 06:00 UTC, EST
        let jump = utc(2026, 3, 8, 7, 0); // 01:59:59 EST is followed by 03:00 EDT
        assert_eq!(
            decide_send(&policy, &subscriber(&[New_York]), &marketing(now), now),
            defer(jump, DeferReason::Window)
        );
    }

    #[test]
    fn an_hour_the_clock_repeats_counts_in_both_passes() {
        let policy = SendingPolicy {
            window: Window::parse("00:00-01:30").unwrap(),
            ..SendingPolicy::default()
        };
        let to = subscriber(&[New_York]);
        // 01:40 EDT: closed, but at 06:00 UTC the clock goes back to 01:00 EST.
        let now = utc(2026, 11, 1, 5, 40);
        let back = utc(2026, 11, 1, 6, 0);
        assert_eq!(
            decide_send(&policy, &to, &notice(now), now),
            defer(back, DeferReason::Window)
        );
        assert_eq!(
            decide_send(&policy, &to, &notice(back), back),
            Verdict::Send
        );
    }

    #[test]
    fn a_policy_with_extreme_numbers_never_panics() {
        let now = wib(23, 10, 0);
        let sent = [now - Duration::days(1)];
        let to = Recipient {
            marketing_sent: &sent,
            ..subscriber(INDONESIA)
        };
        for (max_messages, period_days, min_gap_hours) in [
            (u32::MAX, u32::MAX, u32::MAX),
            (0, 0, 0),
            (1, u32::MAX, 0),
            (9, 1, u32::MAX),
        ] {
            let policy = SendingPolicy {
                max_messages,
                period_days,
                min_gap_hours,
                ..SendingPolicy::default()
            };
            let v = decide_send(&policy, &to, &marketing(now), now);
            assert!(
                matches!(v, Verdict::Skip(_) | Verdict::Defer { .. }),
                "{v:?}"
            );
        }
        let far = DateTime::<Utc>::MAX_UTC - Duration::days(3);
        assert!(matches!(
            decide(&subscriber(INDONESIA), &notice(far), far),
            Verdict::Send | Verdict::Defer { .. } | Verdict::Skip(SkipReason::NoSendTime)
        ));
    }

    // The policy

    #[test]
    fn the_default_policy_is_4_per_30_days_72_hours_apart_08_to_17_every_day() {
        let p = SendingPolicy::default();
        assert_eq!(
            (p.max_messages, p.period_days, p.min_gap_hours),
            (4, 30, 72)
        );
        assert_eq!(p.window, Window::parse("08:00-17:00").unwrap());
        assert_eq!(p.days, Weekdays::ALL);
        assert!(p.holidays.is_empty());
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn validate_names_every_problem_of_a_policy_that_could_never_send() {
        let p = SendingPolicy {
            max_messages: 0,
            period_days: 0,
            window: Window {
                start: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
                end: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            },
            days: Weekdays::NONE,
            ..SendingPolicy::default()
        };
        let e = p.validate().unwrap_err();
        for part in ["max_messages", "period_days", "window", "days"] {
            assert!(e.contains(part), "{e}");
        }
    }

    #[test]
    fn a_window_parses_from_hh_mm_dash_hh_mm() {
        let w = Window::parse("8:00 - 17:30").unwrap();
        assert_eq!(w.to_string(), "08:00-17:30");
        assert_eq!("08:00-17:30".parse::<Window>(), Ok(w));
        assert!(w.contains(NaiveTime::from_hms_opt(8, 0, 0).unwrap()));
        assert!(!w.contains(NaiveTime::from_hms_opt(17, 30, 0).unwrap()));
    }

    #[test]
    fn a_window_that_is_not_a_window_is_refused_with_a_reason() {
        let err = |s: &str| Window::parse(s).unwrap_err();
        assert!(err("0800-1700").contains("\"0800\" is not a time of day"));
        assert!(err("08:00").contains("expected HH:MM-HH:MM"));
        assert!(err("25:00-26:00").contains("\"25:00\" is not a time of day"));
        assert!(err("08:0-17:00").contains("is not a time of day"));
        assert!(err("08:00-8am").contains("\"8am\" is not a time of day"));
        assert!(err("17:00-08:00").contains("cannot be empty or cross midnight"));
        assert!(err("08:00-08:00").contains("cannot be empty"));
        assert!(Window::new(
            NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            NaiveTime::from_hms_opt(9, 0, 0).unwrap()
        )
        .is_err());
    }

    #[test]
    fn a_policy_reads_from_configuration_with_defaults_for_what_it_leaves_out() {
        let p: SendingPolicy = toml::from_str(
            r#"
            max_messages = 3
            window = "09:00-18:00"
            days = ["mon", "Tuesday", "FRI"]
            holidays = ["2026-12-25"]
            "#,
        )
        .unwrap();
        assert_eq!(p.max_messages, 3);
        assert_eq!(p.period_days, 30);
        assert_eq!(p.window.to_string(), "09:00-18:00");
        let days: Vec<Weekday> = p.days.iter().collect();
        assert_eq!(days, [Weekday::Mon, Weekday::Tue, Weekday::Fri]);
        assert_eq!(p.holidays, [NaiveDate::from_ymd_opt(2026, 12, 25).unwrap()]);

        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["window"], "09:00-18:00");
        assert_eq!(json["days"], serde_json::json!(["mon", "tue", "fri"]));
        assert_eq!(serde_json::from_value::<SendingPolicy>(json).unwrap(), p);

        for bad in [
            "window = \"18:00-09:00\"",
            "days = [\"funday\"]",
            "max_mesages = 3",
        ] {
            assert!(toml::from_str::<SendingPolicy>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_frequency_text_is_derived_from_the_cap() {
        let p = SendingPolicy::default();
        assert_eq!(p.frequency_text(Language::Id), "maks. 4 SMS per 30 hari");
        assert_eq!(p.frequency_text(Language::En), "up to 4 msgs per 30 days");
        assert_eq!(p.frequency_text(Language::Ru), "до 4 SMS за 30 дней");
        let daily = SendingPolicy {
            max_messages: 1,
            period_days: 1,
            ..p.clone()
        };
        assert_eq!(daily.frequency_text(Language::Id), "maks. 1 SMS per hari");
        assert_eq!(daily.frequency_text(Language::En), "up to 1 msg per day");
        assert_eq!(daily.frequency_text(Language::Ru), "до 1 SMS в день");
        for (days, word) in [
            (2, "дня"),
            (7, "дней"),
            (11, "дней"),
            (14, "дней"),
            (21, "день"),
            (22, "дня"),
        ] {
            let p = SendingPolicy {
                period_days: days,
                ..p.clone()
            };
            assert_eq!(
                p.frequency_text(Language::Ru),
                format!("до 4 SMS за {days} {word}")
            );
        }
    }

    #[test]
    fn the_largest_number_in_a_text_is_read_from_its_digits() {
        assert_eq!(largest_number_in("2-4 SMS per bulan"), Some(4));
        assert_eq!(largest_number_in("maks. 4 SMS per 30 hari"), Some(30));
        assert_eq!(largest_number_in("Msg frequency varies"), None);
        assert_eq!(largest_number_in("empat SMS"), None);
        assert_eq!(largest_number_in("99999999999 SMS"), Some(u32::MAX));
        assert_eq!(largest_count_in("maks. 4 SMS per 30 hari"), Some(4));
        assert_eq!(largest_count_in("до 4 SMS за 30 дней"), Some(4));
        assert_eq!(largest_count_in("up to 6 msgs per 2 Weeks"), Some(6));
    }

    #[test]
    fn a_frequency_text_naming_more_messages_than_the_cap_is_refused() {
        let cap = |n| SendingPolicy {
            max_messages: n,
            ..SendingPolicy::default()
        };
        assert!(cap(3).check_frequency_text("2-4 SMS per bulan").is_err());
        assert_eq!(cap(4).check_frequency_text("2-4 SMS per bulan"), Ok(()));
        assert_eq!(cap(4).check_frequency_text("Msg frequency varies"), Ok(()));
        for n in [1, 4, 30] {
            for lang in Language::ALL {
                let p = SendingPolicy {
                    period_days: 7,
                    ..cap(n)
                };
                assert_eq!(
                    p.check_frequency_text(&p.frequency_text(lang)),
                    Ok(()),
                    "{n} {lang:?}"
                );
            }
        }
    }

    #[test]
    fn kinds_and_reasons_round_trip_through_their_stored_names() {
        for k in MessageKind::ALL {
            assert_eq!(k.as_str().parse::<MessageKind>(), Ok(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for r in DeferReason::ALL {
            assert_eq!(r.as_str().parse::<DeferReason>(), Ok(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for r in SkipReason::ALL {
            assert_eq!(r.as_str().parse::<SkipReason>(), Ok(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            assert_eq!(r.to_string(), r.as_str());
        }
        let e = "Expired".parse::<SkipReason>().unwrap_err();
        assert_eq!(e.to_string(), "unknown skip reason \"Expired\" (expected not_subscribed, cap_reached, expired, no_send_time or duplicate)");
    }
}
