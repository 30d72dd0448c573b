//! Fuzzing without a database: every gateway's `receive` and `receipts`,
//! the number parser, the classifier and the configuration loader, driven
//! by arbitrary bytes and by structured mutations of real payloads — signed
//! again after the mutation where the gateway signs, so the mutation
//! reaches the parser behind the signature check. The property is the
//! contract's: no input panics, and every refusal is one of the 4xx
//! statuses of CONTRACT §4 (never a 500).
//!
//! Each property runs 10,000 cases here (CI); `cargo test --release --test
//! fuzz -- --ignored` runs the long version, 500,000 cases each
//! (`KEYWARD_FUZZ_CASES` sets another number).

#[path = "support/mod.rs"]
mod support;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::ResponseError;
use chrono::{DateTime, Utc};
use keyward::config::Settings;
use keyward::error::ApiError;
use keyward::gateways::{Gateways, WebhookRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use support::sign::*;

const CI_CASES: u32 = 10_000;
const LONG_CASES: u32 = 500_000;

fn cases(default: u32) -> u32 {
    std::env::var("KEYWARD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// One request as a gateway would send it.
#[derive(Debug, Clone)]
struct Request {
    gateway: &'static str,
    method: Method,
    query: String,
    content_type: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Every gateway configured, the generic one signed.
fn settings() -> Settings {
    let mut s = all_gateways();
    s.gateways.generic = Some(keyward::config::GenericSettings {
        secret: Some(secrets(SHARED)),
        reply_url: None,
        allow_unsigned: false,
    });
    s
}

/// Real payload shapes, one or more per gateway (from each provider's
/// documentation, as the HTTP tests send them).
fn seeds() -> Vec<Request> {
    let token = format!("token={SHARED}");
    let form_ct = "application/x-www-form-urlencoded";
    let twilio = form(&[
        ("SmsMessageSid", "SM1"),
        ("MessageSid", "SM1"),
        ("AccountSid", TWILIO_SID),
        ("From", NUMBER),
        ("To", "+6281100003344"),
        ("Body", "MAU"),
        ("NumMedia", "0"),
        ("OptOutType", "STOP"),
    ]);
    let twilio_status = form(&[
        ("MessageSid", "SM1"),
        ("MessageStatus", "delivered"),
        ("AccountSid", TWILIO_SID),
        ("ErrorCode", "30003"),
    ]);
    let vonage = form(&[
        ("msisdn", "6281234567890"),
        ("to", "3344"),
        ("messageId", "0A01"),
        ("text", "STOP"),
        ("type", "text"),
        ("concat", "true"),
        ("concat-ref", "42"),
        ("concat-total", "2"),
        ("concat-part", "1"),
        ("message-timestamp", "2026-11-23 10:00:00"),
    ]);
    let plivo = form(&[
        ("From", "6281234567890"),
        ("To", "6281100003344"),
        ("Text", "BERHENTI"),
        ("Type", "sms"),
        ("MessageUUID", "1f0a"),
    ]);
    let telnyx = serde_json::json!({"data": {"event_type": "message.received", "id": "ev1",
        "payload": {"id": "m1", "from": {"phone_number": NUMBER}, "to": [{"phone_number": "+6281100003344"}],
                    "text": "СТОП", "received_at": "2026-11-23T10:00:00Z"}}})
    .to_string();
    let telnyx_dlr = serde_json::json!({"data": {"event_type": "message.finalized",
        "payload": {"id": "m1", "to": [{"status": "delivered"}], "errors": []}}})
    .to_string();
    let infobip = serde_json::json!({"results": [{"messageId": "ib1", "from": "6281234567890",
        "to": "3344", "text": "MAU", "receivedAt": "2026-11-23T10:00:00.000+0000"}],
        "messageCount": 1, "pendingMessageCount": 0})
    .to_string();
    let infobip_dlr = serde_json::json!({"results": [{"messageId": "ib1",
        "status": {"groupName": "DELIVERED", "name": "DELIVERED_TO_HANDSET"}}]})
    .to_string();
    let generic = serde_json::json!({"id": "gw-1", "from": NUMBER, "to": "3344", "text": "STOP",
        "received_at": "2026-11-23T10:00:00Z"})
    .to_string();
    let jasmin = form(&[
        ("id", "j1"),
        ("from", "6281234567890"),
        ("to", "3344"),
        ("coding", "8"),
        ("content", "\u{4}\u{1f}\u{4}\u{22}"),
        ("binary", "041F0422"),
    ]);
    let kannel_query = format!(
        "{token}&from=%2B6281234567890&to=3344&text=%04%1F%04%22&id=k1&time=1795428000&coding=2&charset=UTF-16BE"
    );
    let r = |gateway, method: Method, query: String, content_type, body: String| Request {
        gateway,
        method,
        query,
        content_type,
        headers: vec![],
        body: body.into_bytes(),
    };
    vec![
        r("twilio", Method::POST, String::new(), form_ct, twilio),
        r(
            "twilio",
            Method::POST,
            String::new(),
            form_ct,
            twilio_status,
        ),
        r("vonage", Method::GET, vonage.clone(), "", String::new()),
        r("vonage", Method::POST, String::new(), form_ct, vonage),
        r("plivo", Method::POST, String::new(), form_ct, plivo),
        r(
            "telnyx",
            Method::POST,
            String::new(),
            "application/json",
            telnyx,
        ),
        r(
            "telnyx",
            Method::POST,
            String::new(),
            "application/json",
            telnyx_dlr,
        ),
        r(
            "infobip",
            Method::POST,
            token.clone(),
            "application/json",
            infobip,
        ),
        r(
            "infobip",
            Method::POST,
            token.clone(),
            "application/json",
            infobip_dlr,
        ),
        r(
            "generic",
            Method::POST,
            String::new(),
            "application/json",
            generic,
        ),
        r("jasmin", Method::POST, token.clone(), form_ct, jasmin),
        r("kannel", Method::GET, kannel_query, "", String::new()),
    ]
}

/// Signs `req` again, as its gateway would, after a mutation.
fn resign(req: &mut Request) {
    let ts = now().timestamp().to_string();
    let pairs = |bytes: &[u8]| -> Vec<(String, String)> {
        form_urlencoded::parse(bytes).into_owned().collect()
    };
    match req.gateway {
        "twilio" => {
            let params = pairs(&req.body);
            let borrowed: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let url = format!("{PUBLIC_URL}/webhooks/twilio");
            req.headers = vec![(
                "x-twilio-signature".into(),
                twilio_signature(&url, &borrowed),
            )];
        }
        "vonage" => {
            let source = if req.method == Method::GET {
                req.query.as_bytes()
            } else {
                &req.body
            };
            let params: Vec<(String, String)> = pairs(source)
                .into_iter()
                .filter(|(k, _)| k != "sig" && k != "timestamp" && k != "nonce")
                .collect();
            let borrowed: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let signed = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(vonage_signed(&borrowed))
                .finish();
            if req.method == Method::GET {
                req.query = signed;
            } else {
                req.body = signed.into_bytes();
            }
        }
        "plivo" => {
            let params = pairs(&req.body);
            let borrowed: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let url = format!("{PUBLIC_URL}/webhooks/plivo");
            let nonce = "12345678901234567890";
            req.headers = vec![
                ("x-plivo-signature-v3-nonce".into(), nonce.into()),
                (
                    "x-plivo-signature-v3".into(),
                    plivo_signature(&url, &borrowed, nonce),
                ),
            ];
        }
        "telnyx" => {
            req.headers = vec![
                ("telnyx-timestamp".into(), ts.clone()),
                (
                    "telnyx-signature-ed25519".into(),
                    telnyx_signature(&ts, &req.body),
                ),
            ];
        }
        "generic" => {
            let secret = keyward::config::Secret::new(SHARED);
            let ts: i64 = ts.parse().unwrap();
            req.headers = vec![
                ("x-keyward-timestamp".into(), ts.to_string()),
                (
                    "x-keyward-signature".into(),
                    keyward::gateways::generic::sign(&secret, ts, &req.body),
                ),
            ];
        }
        // infobip, kannel, jasmin: the token is in the query, untouched.
        _ => {}
    }
}

/// The statuses a refusal may have (CONTRACT §4).
const REFUSALS: [u16; 6] = [400, 401, 403, 404, 413, 415];

fn call(gateways: &Gateways, req: &Request) -> Result<(), TestCaseError> {
    let gateway = gateways.get(req.gateway).expect("configured");
    let mut headers = HeaderMap::new();
    if !req.content_type.is_empty() {
        headers.insert(
            HeaderName::from_static("content-type"),
            HeaderValue::from_static(req.content_type),
        );
    }
    for (k, v) in &req.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            headers.insert(k, v);
        }
    }
    let receive_path = format!("/webhooks/{}", req.gateway);
    let status_path = format!("/webhooks/{}/status", req.gateway);
    for path in [&receive_path, &status_path] {
        let request = WebhookRequest {
            method: &req.method,
            path,
            query: &req.query,
            headers: &headers,
            body: &req.body,
            now: now(),
        };
        let refused = if path == &receive_path {
            gateway.receive(&request).err()
        } else {
            gateway.receipts(&request).err()
        };
        if let Some(e) = refused {
            let status = ApiError::from(e).status_code().as_u16();
            prop_assert!(REFUSALS.contains(&status), "{status} for {req:?}");
        }
    }
    Ok(())
}

/// A mutation of a request: byte edits of the body or query, or whole
/// fields replaced by arbitrary text (a real field name, any value).
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Truncate(usize),
    Field(String, String),
    Replace(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let names = prop::sample::select(vec![
        "Body",
        "From",
        "To",
        "MessageSid",
        "MessageStatus",
        "ErrorCode",
        "msisdn",
        "to",
        "text",
        "messageId",
        "concat",
        "concat-ref",
        "concat-total",
        "concat-part",
        "Text",
        "MessageUUID",
        "id",
        "from",
        "coding",
        "content",
        "binary",
        "charset",
        "time",
        "type",
        "message-timestamp",
        "NumMedia",
        "OptOutType",
    ]);
    let value = prop_oneof![
        any::<String>(),
        "[0-9+]{0,40}",
        "\\PC{0,300}",
        Just("\u{0}".repeat(3)),
        Just("9".repeat(10_000)),
        Just("-1".into()),
        Just("255".into()),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (names, value).prop_map(|(k, v)| Mutation::Field(k.to_owned(), v)),
        prop::collection::vec(any::<u8>(), 0..2048).prop_map(Mutation::Replace),
    ]
}

fn apply(req: &mut Request, mutations: &[Mutation]) {
    let form_like = req.content_type != "application/json";
    for m in mutations {
        let target = if req.method == Method::GET {
            std::mem::take(&mut req.query).into_bytes()
        } else {
            std::mem::take(&mut req.body)
        };
        let mut bytes = target;
        match m {
            Mutation::Flip(i, b) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes[i] = *b;
            }
            Mutation::Insert(i, more) => {
                let i = i % (bytes.len() + 1);
                bytes.splice(i..i, more.iter().copied());
            }
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            Mutation::Field(k, v) if form_like => {
                let mut pairs: Vec<(String, String)> =
                    form_urlencoded::parse(&bytes).into_owned().collect();
                pairs.retain(|(name, _)| name != k);
                pairs.push((k.clone(), v.clone()));
                bytes = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish()
                    .into_bytes();
            }
            Mutation::Field(k, v) => {
                // JSON: set the field wherever an object has it.
                if let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    set_everywhere(&mut json, k, v);
                    bytes = json.to_string().into_bytes();
                }
            }
            Mutation::Replace(b) => bytes = b.clone(),
            Mutation::Flip(..) => {}
        }
        if req.method == Method::GET {
            // A query string is text; keep what is valid of the bytes.
            req.query = String::from_utf8_lossy(&bytes).into_owned();
        } else {
            req.body = bytes;
        }
    }
}

fn set_everywhere(json: &mut serde_json::Value, key: &str, value: &str) {
    match json {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == key {
                    *v = serde_json::Value::String(value.to_owned());
                } else {
                    set_everywhere(v, key, value);
                }
            }
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| set_everywhere(v, key, value))
        }
        _ => {}
    }
}

fn gateways_hold_up(cases: u32) {
    let gateways = Gateways::from_settings(&settings()).expect("gateways build");
    let seeds = seeds();
    let strategy = (
        0..seeds.len(),
        prop::collection::vec(mutation(), 0..6),
        any::<bool>(),
    );
    runner(cases)
        .run(&strategy, |(seed, mutations, sign)| {
            let mut req = seeds[seed].clone();
            apply(&mut req, &mutations);
            if sign {
                resign(&mut req);
            }
            call(&gateways, &req)
        })
        .unwrap();
}

fn arbitrary_requests_hold_up(cases: u32) {
    let gateways = Gateways::from_settings(&settings()).expect("gateways build");
    let names = [
        "twilio", "vonage", "plivo", "telnyx", "infobip", "kannel", "jasmin", "generic",
    ];
    let strategy = (
        prop::sample::select(names.to_vec()),
        prop::sample::select(vec![Method::GET, Method::POST, Method::PUT, Method::HEAD]),
        prop::sample::select(vec![
            "",
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain",
        ]),
        "\\PC{0,200}",
        prop::collection::vec(any::<u8>(), 0..4096),
        any::<bool>(),
    );
    runner(cases)
        .run(
            &strategy,
            |(gateway, method, content_type, query, body, sign)| {
                let mut req = Request {
                    gateway,
                    method,
                    query: if gateway == "kannel" || gateway == "infobip" || gateway == "jasmin" {
                        format!("token={SHARED}&{query}")
                    } else {
                        query
                    },
                    content_type,
                    headers: vec![],
                    body,
                };
                if sign {
                    resign(&mut req);
                }
                call(&gateways, &req)
            },
        )
        .unwrap();
}

fn numbers_hold_up(cases: u32) {
    let regions: Vec<keyward::msisdn::Region> = ["ID", "RU", "US", "SG", "GB"]
        .iter()
        .map(|r| keyward::msisdn::Region::parse(r).unwrap())
        .collect();
    let strategy = (
        prop_oneof![
            any::<String>(),
            "[+]?[0-9 ()./-]{0,30}",
            "[+]?[0-9]{0,20}",
            "\\PC{0,40}",
        ],
        0..regions.len(),
    );
    runner(cases)
        .run(&strategy, |(raw, region)| {
            for parsed in [
                keyward::msisdn::Msisdn::parse(&raw, regions[region]),
                keyward::msisdn::Msisdn::parse_international(&raw),
            ] {
                match parsed {
                    Ok(n) => {
                        let e164 = n.as_str();
                        prop_assert!(
                            e164.starts_with('+')
                                && (9..=16).contains(&e164.len())
                                && e164[1..].bytes().all(|b| b.is_ascii_digit()),
                            "{e164:?} from {raw:?}"
                        );
                        let again = keyward::msisdn::Msisdn::parse(e164, regions[region]);
                        prop_assert_eq!(again.as_ref().map(|m| m.as_str()), Ok(e164));
                    }
                    Err(e) => {
                        // The message quotes the input masked, never whole.
                        let message = e.to_string();
                        prop_assert!(
                            !keyward::telemetry::looks_like_a_number(&message),
                            "{message}"
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

fn classifier_holds_up(cases: u32) {
    let classifier = keyward::core::Classifier::new(&keyward::core::ClassifierConfig::default());
    let strategy = prop_oneof![
        any::<String>(),
        "\\PC{0,400}",
        "(?i)(stop|mau|unreg|стоп|help|ya|all|promo| |!|\u{200b}|０){0,20}",
    ];
    runner(cases)
        .run(&strategy, |text| {
            let c = classifier.classify(&text);
            // Only configured programs are ever named (none here).
            prop_assert_eq!(c.program, None);
            let normal = keyward::core::normalize(&text);
            prop_assert_eq!(keyward::core::normalize(&normal), normal.clone());
            Ok(())
        })
        .unwrap();
}

fn config_loader_holds_up(cases: u32) {
    let example = include_str!("../deploy/keyward.example.toml");
    let lines: Vec<&str> = example.lines().collect();
    let strategy = prop_oneof![
        // Arbitrary text.
        "\\PC{0,500}".prop_map(|s| s),
        // The example with lines dropped, doubled or given other values.
        (
            prop::collection::vec((0..lines.len(), 0..4u8, "\\PC{0,40}"), 0..8),
            Just(lines.clone())
        )
            .prop_map(|(edits, lines)| {
                let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                for (i, op, text) in edits {
                    let i = i % out.len().max(1);
                    match op {
                        0 => {
                            out.remove(i.min(out.len().saturating_sub(1)));
                        }
                        1 => out.insert(i, out[i.min(out.len() - 1)].clone()),
                        2 => {
                            if let Some((k, _)) = out[i].split_once('=') {
                                out[i] = format!("{k}= {text:?}");
                            }
                        }
                        _ => out.insert(i, text),
                    }
                    if out.is_empty() {
                        break;
                    }
                }
                out.join("\n")
            }),
    ];
    runner(cases)
        .run(&strategy, |text| {
            let loaded =
                Settings::from_sources(Some((std::path::Path::new("keyward.toml"), &text)), &[]);
            if let Err(e) = loaded {
                prop_assert!(!e.0.is_empty(), "a refusal says why");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn every_gateway_survives_mutations_of_its_real_payloads() {
    gateways_hold_up(cases(CI_CASES));
}

#[test]
fn every_gateway_survives_arbitrary_requests() {
    arbitrary_requests_hold_up(cases(CI_CASES));
}

#[test]
fn the_number_parser_survives_anything() {
    numbers_hold_up(cases(CI_CASES));
}

#[test]
fn the_classifier_survives_anything() {
    classifier_holds_up(cases(CI_CASES));
}

#[test]
fn the_config_loader_survives_anything() {
    config_loader_holds_up(cases(CI_CASES));
}

#[test]
#[ignore = "long fuzzing run: cargo test --release --test fuzz -- --ignored"]
fn long_fuzzing_run() {
    let n = cases(LONG_CASES);
    gateways_hold_up(n);
    arbitrary_requests_hold_up(n);
    numbers_hold_up(n);
    classifier_holds_up(n);
    config_loader_holds_up(n);
}
