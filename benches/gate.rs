//! Throughput of the send gate, in decisions per second: the common case
//! (inside the window, nothing to wait for) with one and three candidate
//! zones, a deferral (a search for the next opening), a recipient at the
//! cap, and a number whose zones never share daytime (the longest search).
//!
//! `cargo bench --bench gate -- --warm-up-time 1 --measurement-time 3`

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Asia::{Jakarta, Jayapura, Makassar};
use chrono_tz::Tz;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use keyward::core::zones::candidate_zones;
use keyward::core::{decide_send, MessageKind, Outbound, Recipient, SendingPolicy, Verdict};

/// 1,000 recipients per iteration, so the figure reads as decisions.
const BATCH: u64 = 1_000;

fn wib(d: u32, h: u32) -> DateTime<Utc> {
    Jakarta
        .with_ymd_and_hms(2026, 11, d, h, 0, 0)
        .single()
        .expect("fixed instant")
        .with_timezone(&Utc)
}

fn bench_gate(c: &mut Criterion) {
    let policy = SendingPolicy::default();
    let one: &[Tz] = &[Jakarta];
    let three: &[Tz] = &[Jakarta, Makassar, Jayapura];
    let russia = candidate_zones("+79161234567");
    let day = wib(23, 10);
    let night = wib(23, 3);
    // Two earlier sends, far enough apart and old enough for the gap.
    let history = [day - Duration::days(20), day - Duration::days(10)];
    let capped = [25, 18, 11, 4].map(|d| day - Duration::days(d));
    let message = |now| Outbound {
        kind: MessageKind::Marketing,
        not_before: now,
        valid_until: Some(now + Duration::days(2)),
    };
    let to = |zones, sent| Recipient {
        subscribed: true,
        zones,
        marketing_sent: sent,
        already_sent: false,
    };

    let cases = [
        ("send_now_1_zone", to(one, &history), day, "send"),
        ("send_now_3_zones", to(three, &history), day, "send"),
        (
            "defer_3_zones_at_night",
            to(three, &history),
            night,
            "defer",
        ),
        (
            "skip_capped_4_previous_sends",
            to(three, &capped),
            day,
            "skip",
        ),
        (
            "skip_no_send_time_16_zones",
            to(russia, &history),
            day,
            "skip",
        ),
    ];

    let mut group = c.benchmark_group("gate");
    group.throughput(Throughput::Elements(BATCH));
    for (name, recipient, now, expected) in cases {
        let m = message(now);
        // Measure the case it says it is.
        let v = decide_send(&policy, &recipient, &m, now);
        let got = match v {
            Verdict::Send => "send",
            Verdict::Defer { .. } => "defer",
            Verdict::Skip(_) => "skip",
        };
        assert_eq!(got, expected, "{name}: {v:?}");
        group.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    black_box(decide_send(
                        black_box(&policy),
                        black_box(&recipient),
                        black_box(&m),
                        black_box(now),
                    ));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_gate);
criterion_main!(benches);
