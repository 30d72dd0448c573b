//! Throughput of the pure core: normalise + classify over a realistic mixed
//! corpus (mostly keywords, some sentences, some noise, in id/en/ru), and the
//! state machine's `decide`.
//!
//! `cargo bench --bench classify -- --warm-up-time 1 --measurement-time 3`

use chrono::{Duration, TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use keyward::core::{
    decide, normalize, Classifier, ClassifierConfig, Facts, Policy, ProgramKeywords, State,
};

const CORPUS: &[&str] = &[
    // keywords, as people type them
    "MAU",
    "mau",
    "Mau dong",
    "MAU PROMO",
    "daftar",
    "REG NEWS",
    "YA",
    "ya kak",
    "STOP",
    "stop",
    "Stop.",
    "UNREG",
    "UNREG PROMO",
    "unreg all",
    "BERHENTI",
    "berhenti dong",
    "UNSUBSCRIBE",
    "unsubcribe",
    "STOP ALL",
    "HELP",
    "help?",
    "INFO",
    "bantuan",
    "START",
    "Yes please",
    "СТОП",
    "стоп",
    "CTOП",
    "Отписаться",
    "ДА",
    "Старт",
    "ПОМОЩЬ",
    "🛑 STOP 🛑",
    "ＳＴＯＰ",
    "S\u{200B}TOP",
    // sentences
    "Stop. Thank you",
    "please stop texting me",
    "don't stop sending me deals",
    "We have got to STOP this bill",
    "Mau tanya harga",
    "tidak mau lagi",
    "jangan kirim sms lagi",
    "jangan berhenti kirim promo",
    "не пишите мне больше",
    "уберите меня из рассылки",
    "Start? What is this?",
    // noise
    "🙏🙏🙏",
    "Halo, ini siapa?",
    "ok",
    "Привет! Как дела?",
];

fn classifier() -> Classifier {
    let program = |name: &str| ProgramKeywords {
        name: name.to_string(),
        ..Default::default()
    };
    Classifier::new(&ClassifierConfig {
        programs: vec![program("promo"), program("news")],
    })
}

fn bench_classify(c: &mut Criterion) {
    let classifier = classifier();
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(CORPUS.len() as u64));
    group.bench_function("normalize_and_classify_corpus", |b| {
        b.iter(|| {
            for text in CORPUS {
                black_box(classifier.classify(black_box(text)));
            }
        })
    });
    group.bench_function("normalize_corpus", |b| {
        b.iter(|| {
            for text in CORPUS {
                black_box(normalize(black_box(text)));
            }
        })
    });
    group.finish();
}

fn bench_decide(c: &mut Criterion) {
    let classifier = classifier();
    let now = Utc
        .with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("fixed instant");
    let messages: Vec<_> = CORPUS.iter().map(|t| classifier.classify(t)).collect();
    let facts: Vec<Facts> = State::ALL
        .iter()
        .map(|&state| Facts {
            state,
            changed_at: Some(now - Duration::hours(3)),
            last_opt_out_at: Some(now - Duration::hours(30)),
            last_goodbye_at: Some(now - Duration::hours(2)),
            sent_at: Some(now - Duration::seconds(5)),
            ..Facts::default()
        })
        .collect();
    let policy = Policy {
        double_opt_in: true,
        ..Policy::default()
    };
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements((messages.len() * facts.len()) as u64));
    group.bench_function("decide_corpus_in_every_state", |b| {
        b.iter(|| {
            for m in &messages {
                for f in &facts {
                    black_box(decide(black_box(f), black_box(m), &policy, now));
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_classify, bench_decide);
criterion_main!(benches);
