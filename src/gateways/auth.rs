//! Authenticating webhook requests: constant-time comparison, HMAC under
//! rotating keys, shared secrets for gateways that cannot sign, and the
//! one replay window for signed timestamps.

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use super::{WebhookError, WebhookRequest};
use crate::config::{is_placeholder, Secret, Secrets, Settings};

/// How far a signed timestamp may be from now, either way, before the
/// request counts as a replay (or a clock too far off): five minutes, as
/// Telnyx and Stripe-style signatures recommend.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// What is wrong with the settings of a gateway that signs the URL it
/// calls with an auth token (Twilio, Plivo): no token may be empty or the
/// example's placeholder, and the public URL must be known to check it.
pub fn url_signing_problems(settings: &Settings, gateway: &str, tokens: &Secrets) -> Vec<String> {
    let mut problems = Vec::new();
    if tokens.all().iter().any(|s| s.expose().is_empty()) {
        problems.push(format!("gateways.{gateway}.auth_token: is empty"));
    }
    if tokens.all().iter().any(|s| is_placeholder(s.expose())) {
        problems.push(format!("gateways.{gateway}.auth_token: is a placeholder"));
    }
    if settings.service.public_url.is_none() {
        problems.push(format!(
            "gateways.{gateway}: service.public_url is needed to check the URL signatures"
        ));
    }
    problems
}

/// Constant-time equality of two secrets (or a secret and a guess).
pub fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Does `tag` equal HMAC(`key`, `message`) under any of the keys?
/// Comparison is constant-time per key.
pub fn hmac_matches<M: Mac + KeyInit>(keys: &[Secret], message: &[&[u8]], tag: &[u8]) -> bool {
    keys.iter().any(|key| {
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(key.expose().as_bytes()) else {
            return false;
        };
        for part in message {
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    })
}

/// Authenticates a gateway that cannot sign its requests: the password of
/// HTTP Basic auth, or a `token` query parameter, must equal one of the
/// configured secrets (compared in constant time).
pub fn check_shared_secret(
    req: &WebhookRequest<'_>,
    secrets: &[Secret],
) -> Result<(), WebhookError> {
    use base64::Engine;
    let from_basic = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|decoded| {
            let split = decoded.iter().position(|b| *b == b':')?;
            Some(decoded[split + 1..].to_vec())
        });
    let presented = from_basic.or_else(|| {
        form_urlencoded::parse(req.query.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned().into_bytes())
    });
    let Some(presented) = presented else {
        return Err(WebhookError::Unauthorized(
            "missing credentials: HTTP Basic auth or ?token=".into(),
        ));
    };
    if secrets
        .iter()
        .any(|s| secret_eq(s.expose().as_bytes(), &presented))
    {
        Ok(())
    } else {
        Err(WebhookError::Forbidden("wrong credentials".into()))
    }
}

/// Checks a `timestamp` (unix seconds) is within `window` seconds of now.
pub fn check_timestamp(
    raw: Option<&str>,
    now: DateTime<Utc>,
    window: i64,
) -> Result<i64, WebhookError> {
    let raw = raw.ok_or_else(|| WebhookError::Unauthorized("missing timestamp".into()))?;
    let ts: i64 = raw
        .trim()
        .parse()
        .map_err(|_| WebhookError::Unauthorized("malformed timestamp".into()))?;
    if (now.timestamp() - ts).abs() > window {
        return Err(WebhookError::Forbidden(format!(
            "timestamp is more than {window} s from now (replayed or clock skew)"
        )));
    }
    Ok(ts)
}
