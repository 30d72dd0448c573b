//! The gateways' credentials and signatures, computed as each gateway
//! documents them (independently of keyward's own code), for the HTTP
//! tests and the fuzzing of every adapter.

use base64::Engine;
use hmac::{KeyInit, Mac};
use keyward::config::{self, Secret, Secrets, Settings};

use super::test_settings;

pub const PUBLIC_URL: &str = "https://sms.example.com";
pub const TWILIO_TOKEN: &str = "twilio-token-0123456789";
pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const VONAGE_SECRET: &str = "vonage-secret-0123456789";
pub const PLIVO_TOKEN: &str = "plivo-token-0123456789";
pub const SHARED: &str = "shared-secret-0123456789";
pub const TELNYX_SEED: [u8; 32] = [7; 32];
pub const NUMBER: &str = "+6281234567890";

pub fn secrets(s: &str) -> Secrets {
    Secrets::One(Secret::new(s))
}

pub fn all_gateways() -> Settings {
    test_settings(|s| {
        s.service.public_url = Some(PUBLIC_URL.into());
        // Twilio, Plivo and Telnyx address messages to the long number.
        s.shortcodes.push(config::ShortcodeSettings {
            code: "6281100003344".into(),
            program: s.shortcodes[0].program.clone(),
            reply_via: "log".into(),
            language: keyward::core::Language::Id,
        });
        let telnyx_public = ed25519_dalek::SigningKey::from_bytes(&TELNYX_SEED).verifying_key();
        s.gateways = config::GatewaySettings {
            twilio: Some(config::TwilioSettings {
                account_sid: TWILIO_SID.into(),
                auth_token: secrets(TWILIO_TOKEN),
                api_base: "http://127.0.0.1:9".into(),
            }),
            vonage: Some(config::VonageSettings {
                api_key: "key".into(),
                api_secret: None,
                signature_secret: secrets(VONAGE_SECRET),
                signature_method: config::VonageSignatureMethod::Md5hash,
                api_base: "http://127.0.0.1:9".into(),
            }),
            plivo: Some(config::PlivoSettings {
                auth_id: "MAXXXXXXXXXXXXXXXXXX".into(),
                auth_token: secrets(PLIVO_TOKEN),
                api_base: "http://127.0.0.1:9".into(),
            }),
            telnyx: Some(config::TelnyxSettings {
                api_key: None,
                public_key: base64::engine::general_purpose::STANDARD
                    .encode(telnyx_public.as_bytes()),
                api_base: "http://127.0.0.1:9".into(),
            }),
            infobip: Some(config::InfobipSettings {
                secret: secrets(SHARED),
                api_key: None,
                api_base: "http://127.0.0.1:9".into(),
            }),
            kannel: Some(config::KannelSettings {
                secret: secrets(SHARED),
                sendsms_url: None,
                username: None,
                password: None,
            }),
            jasmin: Some(config::JasminSettings {
                secret: secrets(SHARED),
                api_base: "http://127.0.0.1:9".into(),
                username: None,
                password: None,
            }),
            generic: None,
        };
    })
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// --- signatures, as each gateway documents them -------------------------

pub fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = owned(params);
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data += &k;
        data += &v;
    }
    let mut mac =
        <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(TWILIO_TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn vonage_signed(params: &[(&str, &str)]) -> Vec<(String, String)> {
    use md5::Digest;
    let mut p = owned(params);
    p.push((
        "timestamp".into(),
        chrono::Utc::now().timestamp().to_string(),
    ));
    p.push(("nonce".into(), "6b3f1c9e".into()));
    let mut sorted = p.clone();
    sorted.sort();
    let mut hasher = md5::Md5::new();
    for (k, v) in &sorted {
        hasher.update(format!("&{k}={}", v.replace(['&', '='], "_")).as_bytes());
    }
    hasher.update(VONAGE_SECRET.as_bytes());
    p.push(("sig".into(), hex::encode(hasher.finalize())));
    p
}

pub fn plivo_signature(url: &str, post: &[(&str, &str)], nonce: &str) -> String {
    let mut sorted = owned(post);
    sorted.sort();
    let mut base = format!("{url}?");
    for (k, v) in sorted {
        base += &k;
        base += &v;
    }
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(PLIVO_TOKEN.as_bytes()).unwrap();
    mac.update(format!("{base}.{nonce}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn telnyx_signature(timestamp: &str, body: &[u8]) -> String {
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(&TELNYX_SEED);
    let mut message = format!("{timestamp}|").into_bytes();
    message.extend_from_slice(body);
    base64::engine::general_purpose::STANDARD.encode(key.sign(&message).to_bytes())
}
