//! Properties of the send gate over generated policies, zones, histories
//! and times: consent is never bypassed, a simulated stream of broadcasts
//! never exceeds the cap or the gap (nor does one decision at their edges), nothing is sent outside the window in
//! any candidate zone or after it expired, a deferral lands on the earliest
//! moment that is then sent, and New York's daylight-saving days keep 08:00
//! at 08:00.
//!
//! Local time is checked here with chrono-tz directly (the wall clock of
//! `now` in each zone), not with the gate's own arithmetic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use keyward::core::zones::candidate_zones;
use keyward::core::{
    decide_send, MessageKind, Outbound, Recipient, SendingPolicy, SkipReason, Verdict, Weekdays,
    Window,
};
use proptest::prelude::*;
use proptest::sample::select;

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("fixed instant")
}

/// Zone sets a recipient may have: single zones, several zones of one
/// country, zones that never share daytime, and zones with odd offsets or
/// daylight-saving rules (30-minute DST, changes at midnight).
fn zone_sets() -> Vec<Vec<Tz>> {
    use chrono_tz::{America, Asia, Australia, Europe, Pacific};
    vec![
        vec![Asia::Jakarta],
        vec![Asia::Jakarta, Asia::Makassar],
        vec![Asia::Jakarta, Asia::Makassar, Asia::Jayapura],
        vec![America::New_York],
        vec![America::New_York, America::Chicago, America::Los_Angeles],
        vec![Europe::Moscow],
        vec![Asia::Vladivostok],
        candidate_zones("+79161234567").to_vec(),
        vec![Asia::Kathmandu],
        vec![Australia::Lord_Howe],
        vec![America::Havana],
        vec![America::Santiago],
        vec![Asia::Tehran],
        vec![Europe::London, Europe::Berlin],
        vec![Pacific::Chatham, Pacific::Apia],
    ]
}

fn zones() -> impl Strategy<Value = Vec<Tz>> {
    select(zone_sets())
}

fn instant(max_days: i64) -> impl Strategy<Value = DateTime<Utc>> {
    (0..max_days * 86_400).prop_map(|s| base() + Duration::seconds(s))
}

fn window() -> impl Strategy<Value = Window> {
    (0u32..24 * 4, 1u32..24 * 4).prop_map(|(a, len)| {
        let start = a.min(24 * 4 - 1);
        let end = (start + len).min(24 * 4 - 1).max(start + 1);
        let time = |q: u32| {
            if q >= 24 * 4 {
                NaiveTime::from_hms_opt(23, 59, 0)
            } else {
                NaiveTime::from_hms_opt(q / 4, (q % 4) * 15, 0)
            }
            .expect("a time of day")
        };
        Window::new(time(start), time(end)).expect("start before end")
    })
}

fn policy() -> impl Strategy<Value = SendingPolicy> {
    (
        1u32..6,
        1u32..40,
        0u32..100,
        prop_oneof![3 => Just(SendingPolicy::default().window), 2 => window()],
        prop_oneof![3 => Just(0b111_1111u8), 2 => 1u8..=0b111_1111],
        prop::collection::vec(0i64..400, 0..4),
    )
        .prop_map(
            |(max_messages, period_days, min_gap_hours, window, days, holidays)| SendingPolicy {
                max_messages,
                period_days,
                min_gap_hours,
                window,
                days: weekdays(days),
                holidays: holidays
                    .into_iter()
                    .map(|d| base().date_naive() + Duration::days(d))
                    .collect(),
            },
        )
}

fn weekdays(bits: u8) -> Weekdays {
    [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| bits & (1 << i) != 0)
    .map(|(_, d)| d)
    .collect()
}

fn kind() -> impl Strategy<Value = MessageKind> {
    prop_oneof![3 => Just(MessageKind::Marketing), 1 => Just(MessageKind::Notice)]
}

/// Whether the wall clock of `t` in `tz` is inside the policy's window on a
/// sending day: the oracle, from chrono-tz alone.
fn open_in(policy: &SendingPolicy, tz: Tz, t: DateTime<Utc>) -> bool {
    let local = t.with_timezone(&tz).naive_local();
    policy.window.contains(local.time())
        && policy.days.contains(local.weekday())
        && !policy.holidays.contains(&local.date())
}

fn open_everywhere(policy: &SendingPolicy, zones: &[Tz], t: DateTime<Utc>) -> bool {
    zones.iter().all(|&tz| open_in(policy, tz, t))
}

/// Previous marketing sends, as hours before `now`.
fn history(now: DateTime<Utc>, hours_ago: &[u32]) -> Vec<DateTime<Utc>> {
    hours_ago
        .iter()
        .map(|&h| now - Duration::hours(h.into()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_send_when_not_subscribed(
        policy in policy(),
        zones in zones(),
        now in instant(400),
        kind in kind(),
        hours_ago in prop::collection::vec(0u32..2000, 0..6),
        already_sent in any::<bool>(),
        not_before in instant(400),
        valid_hours in prop::option::of(0i64..500),
    ) {
        let sent = history(now, &hours_ago);
        let to = Recipient { subscribed: false, zones: &zones, marketing_sent: &sent, already_sent };
        let message = Outbound { kind, not_before, valid_until: valid_hours.map(|h| now + Duration::hours(h)) };
        let v = decide_send(&policy, &to, &message, now);
        prop_assert!(
            v == Verdict::Skip(SkipReason::NotSubscribed) || v == Verdict::Skip(SkipReason::Duplicate),
            "{v:?}"
        );
    }

    #[test]
    fn never_send_outside_the_window_in_any_zone_or_on_a_day_off_or_at_or_after_expiry(
        policy in policy(),
        zones in zones(),
        now in instant(400),
        kind in kind(),
        hours_ago in prop::collection::vec(0u32..2000, 0..6),
        not_before_minutes in -600i64..600,
        valid_minutes in prop::option::of(-120i64..2000),
    ) {
        let sent = history(now, &hours_ago);
        let to = Recipient { subscribed: true, zones: &zones, marketing_sent: &sent, already_sent: false };
        let valid_until = valid_minutes.map(|m| now + Duration::minutes(m));
        let message = Outbound { kind, not_before: now + Duration::minutes(not_before_minutes), valid_until };
        let v = decide_send(&policy, &to, &message, now);
        if v == Verdict::Send {
            for &tz in &zones {
                let local = now.with_timezone(&tz);
                prop_assert!(open_in(&policy, tz, now), "sent at {local} in {tz} under {policy:?}");
            }
            prop_assert!(valid_until.is_none_or(|v| now < v));
            prop_assert!(message.not_before <= now);
        }
        if let Verdict::Defer { until, .. } = v {
            prop_assert!(valid_until.is_none_or(|v| until < v), "deferred past expiry");
        }
    }

    #[test]
    fn a_marketing_send_keeps_the_cap_and_the_gap_even_at_their_edges(
        policy in policy(),
        zones in zones(),
        now in instant(400),
        minutes_ago in prop::collection::vec(0i64..60 * 24 * 45, 0..6),
        near_gap_end in prop::collection::vec(-90i64..90, 0..2),
        near_period_start in prop::collection::vec(-90i64..90, 0..3),
    ) {
        let gap = Duration::hours(policy.min_gap_hours.into());
        let period = Duration::days(policy.period_days.into());
        let sent: Vec<DateTime<Utc>> = minutes_ago
            .iter()
            .map(|&m| now - Duration::minutes(m))
            .chain(near_gap_end.iter().map(|&m| now - gap + Duration::minutes(m)))
            .chain(near_period_start.iter().map(|&m| now - period + Duration::minutes(m)))
            .collect();
        let to = Recipient { subscribed: true, zones: &zones, marketing_sent: &sent, already_sent: false };
        let message = Outbound { kind: MessageKind::Marketing, not_before: now, valid_until: None };
        if decide_send(&policy, &to, &message, now) == Verdict::Send {
            let in_period = sent.iter().filter(|&&t| t > now - period).count();
            prop_assert!(in_period < policy.max_messages as usize, "{in_period} sends in the period");
            for &t in &sent {
                prop_assert!(t + gap <= now, "sent {} after a send at {t}", now - t);
            }
        }
    }

    #[test]
    fn a_deferral_lands_on_the_earliest_open_moment_and_asking_then_sends(
        policy in policy(),
        zones in zones(),
        now in instant(400),
        kind in kind(),
        hours_ago in prop::collection::vec(0u32..2000, 0..5),
        not_before_minutes in -600i64..3000,
        valid_hours in prop::option::of(1i64..2000),
    ) {
        let sent = history(now, &hours_ago);
        let to = Recipient { subscribed: true, zones: &zones, marketing_sent: &sent, already_sent: false };
        let message = Outbound {
            kind,
            not_before: now + Duration::minutes(not_before_minutes),
            valid_until: valid_hours.map(|h| now + Duration::hours(h)),
        };
        if let Verdict::Defer { until, .. } = decide_send(&policy, &to, &message, now) {
            prop_assert!(until > now);
            prop_assert!(until >= message.not_before);
            prop_assert!(open_everywhere(&policy, &zones, until), "deferred to a closed moment {until}");
            prop_assert_eq!(decide_send(&policy, &to, &message, until), Verdict::Send);
            // No whole minute between the rules' earliest moment and `until`
            // is open in every zone (checked over the first three days).
            let gap_end = (kind == MessageKind::Marketing)
                .then(|| sent.iter().max().map(|&t| t + Duration::hours(policy.min_gap_hours.into())))
                .flatten();
            let earliest = [Some(now), Some(message.not_before), gap_end].into_iter().flatten().max().unwrap();
            let secs = earliest.timestamp();
            let mut t = DateTime::from_timestamp(secs - secs.rem_euclid(60), 0).unwrap();
            if t < earliest {
                t += Duration::minutes(1);
            }
            let stop = until.min(earliest + Duration::days(3));
            while t < stop {
                prop_assert!(!open_everywhere(&policy, &zones, t), "{t} was open before {until}");
                t += Duration::minutes(1);
            }
        }
    }
}

/// One number, one program, a stream of broadcasts: each asks the gate at
/// its start, and again at `until` when deferred, in time order.
fn simulate(
    policy: &SendingPolicy,
    zones: &[Tz],
    broadcasts: &[(i64, MessageKind, Option<i64>)],
) -> Result<Vec<(DateTime<Utc>, MessageKind)>, TestCaseError> {
    let mut queue: BinaryHeap<Reverse<(DateTime<Utc>, usize)>> = broadcasts
        .iter()
        .enumerate()
        .map(|(i, &(start_minutes, _, _))| Reverse((base() + Duration::minutes(start_minutes), i)))
        .collect();
    let mut marketing_sent = Vec::new();
    let mut sends = Vec::new();
    let mut done = vec![false; broadcasts.len()];
    let mut asks = 0;
    while let Some(Reverse((now, i))) = queue.pop() {
        asks += 1;
        prop_assert!(
            asks < 50 * broadcasts.len().max(1),
            "the stream does not settle"
        );
        let (start_minutes, kind, valid_hours) = broadcasts[i];
        let not_before = base() + Duration::minutes(start_minutes);
        let message = Outbound {
            kind,
            not_before,
            valid_until: valid_hours.map(|h| not_before + Duration::hours(h)),
        };
        let to = Recipient {
            subscribed: true,
            zones,
            marketing_sent: &marketing_sent,
            already_sent: done[i],
        };
        match decide_send(policy, &to, &message, now) {
            Verdict::Send => {
                prop_assert!(!done[i], "a broadcast sent twice");
                done[i] = true;
                sends.push((now, kind));
                if kind == MessageKind::Marketing {
                    marketing_sent.push(now);
                }
                // A retry of the same broadcast must be a duplicate.
                queue.push(Reverse((now + Duration::minutes(1), i)));
            }
            Verdict::Defer { until, .. } => {
                prop_assert!(until > now);
                queue.push(Reverse((until, i)));
            }
            Verdict::Skip(SkipReason::Duplicate) => prop_assert!(done[i]),
            Verdict::Skip(_) => {}
        }
    }
    Ok(sends)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_stream_of_broadcasts_never_exceeds_the_cap_or_the_gap(
        policy in policy(),
        zones in zones(),
        broadcasts in prop::collection::vec(
            (0i64..90 * 24 * 60, kind(), prop::option::of(1i64..24 * 20)),
            1..16,
        ),
    ) {
        let sends = simulate(&policy, &zones, &broadcasts)?;
        let marketing: Vec<DateTime<Utc>> = sends
            .iter()
            .filter(|(_, k)| *k == MessageKind::Marketing)
            .map(|&(t, _)| t)
            .collect();
        let period = Duration::days(policy.period_days.into());
        let max = policy.max_messages as usize;
        for w in marketing.windows(max + 1) {
            prop_assert!(w[max] - w[0] >= period, "{} marketing sends within {period}: {w:?}", max + 1);
        }
        let gap = Duration::hours(policy.min_gap_hours.into());
        for w in marketing.windows(2) {
            prop_assert!(w[1] - w[0] >= gap, "marketing sends {} and {} closer than {gap}", w[0], w[1]);
        }
        for &(t, _) in &sends {
            prop_assert!(open_everywhere(&policy, &zones, t), "sent at {t} outside the window");
        }
    }
}

// Daylight saving time in New York: 2026-03-08 (02:00 EST → 03:00 EDT) and
// 2026-11-01 (02:00 EDT → 01:00 EST).

fn new_york(date: NaiveDate, h: u32, m: u32) -> DateTime<Utc> {
    chrono_tz::America::New_York
        .from_local_datetime(&date.and_hms_opt(h, m, 0).expect("a time"))
        .earliest()
        .expect("a time that exists")
        .with_timezone(&Utc)
}

fn dst_day() -> impl Strategy<Value = NaiveDate> {
    select(vec![
        NaiveDate::from_ymd_opt(2026, 3, 8).expect("a date"),
        NaiveDate::from_ymd_opt(2026, 11, 1).expect("a date"),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn around_new_yorks_clock_changes_sends_keep_to_08_17_local_and_deferrals_land_on_08_00(
        day in dst_day(),
        offset_seconds in -3 * 86_400i64..3 * 86_400,
        kind in kind(),
    ) {
        let tz = chrono_tz::America::New_York;
        let policy = SendingPolicy::default();
        let now = new_york(day, 12, 0) + Duration::seconds(offset_seconds);
        let zones = [tz];
        let to = Recipient { subscribed: true, zones: &zones, ..Recipient::default() };
        let message = Outbound { kind, not_before: now, valid_until: None };
        let local = now.with_timezone(&tz).naive_local();
        let eight = NaiveTime::from_hms_opt(8, 0, 0).expect("08:00");
        let seventeen = NaiveTime::from_hms_opt(17, 0, 0).expect("17:00");
        let expected = if local.time() >= eight && local.time() < seventeen {
            Verdict::Send
        } else {
            let date = if local.time() < eight { local.date() } else { local.date() + Duration::days(1) };
            Verdict::Defer { until: new_york(date, 8, 0), reason: keyward::core::DeferReason::Window }
        };
        prop_assert_eq!(decide_send(&policy, &to, &message, now), expected, "at {}", local);
    }
}

#[test]
fn from_03_00_local_on_both_change_days_the_deferral_lands_on_08_00_local() {
    let tz = chrono_tz::America::New_York;
    let zones = [tz];
    let to = Recipient {
        subscribed: true,
        zones: &zones,
        ..Recipient::default()
    };
    for (day, utc_eight) in [
        (NaiveDate::from_ymd_opt(2026, 3, 8).unwrap(), 12), // EDT
        (NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), 13), // EST
    ] {
        let now = new_york(day, 3, 0);
        let message = Outbound {
            kind: MessageKind::Marketing,
            not_before: now,
            valid_until: None,
        };
        let v = decide_send(&SendingPolicy::default(), &to, &message, now);
        let until = Utc
            .from_utc_datetime(&day.and_hms_opt(utc_eight, 0, 0).unwrap())
            .with_timezone(&Utc);
        assert_eq!(
            v,
            Verdict::Defer {
                until,
                reason: keyward::core::DeferReason::Window
            },
            "{day}"
        );
        assert_eq!(
            until.with_timezone(&tz).naive_local(),
            day.and_hms_opt(8, 0, 0).unwrap()
        );
    }
}
