//! Who is on the other end of a connection, and how many failed sign-ins
//! they may cost us.
//!
//! [`client_addr`] is the peer's address, or — only when the peer is one of
//! `service.trusted_proxies` — the address the proxy says it forwarded
//! for. [`AuthGuard`] counts failed authentications per client (an IPv6
//! client by its /64, which one subscriber line usually gets whole) and in
//! all: past the allowance a failure is answered 429 with no audit row, so
//! a flood of bad tokens costs the database one indexed read each (none for
//! a token that cannot be one of ours) and the audit trail nothing more.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

/// Failed authentications per second from everyone together: past it even
/// new clients are refused, so many addresses cannot add up to a flood.
pub const FAILURES_PER_SECOND: u32 = 50;

/// The client's address: the TCP peer, unless the peer is a trusted proxy,
/// in which case the right-most address in `X-Forwarded-For` that is not
/// itself a trusted proxy (the one the first trusted hop saw).
pub fn client_addr(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let entries: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    // From the right: each trusted hop appended the address it saw. An
    // entry that is no address ends the walk (everything left of it is the
    // client's to write), and the peer is what we know.
    let mut client = peer;
    for entry in entries.iter().rev() {
        match parse_forwarded(entry) {
            Some(addr) if is_trusted(addr, trusted) => client = addr,
            Some(addr) => return Some(addr),
            None => return Some(client),
        }
    }
    Some(client)
}

/// An `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `::1`,
/// `[::1]:5678`.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

/// Is the peer one of the configured proxies?
pub fn is_trusted(addr: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&addr))
}

/// Did this request reach a proxy we trust over HTTPS? Only a trusted
/// proxy's `X-Forwarded-Proto` counts; anyone else could send the header.
pub fn forwarded_https(req: &HttpRequest, trusted: &[IpNet]) -> bool {
    if req.app_config().secure() {
        return true;
    }
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return false;
    };
    is_trusted(peer, trusted)
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// The key failures are counted under: an IPv6 address by its /64.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// The allowance of failed authentications, shared by every worker.
pub struct AuthGuard {
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    overall: DefaultDirectRateLimiter,
    checks: std::sync::atomic::AtomicU64,
    /// Clients past their allowance, until it has refilled by one: they
    /// are refused before any database work (governor cannot be asked
    /// without spending a cell).
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// How long the allowance takes to refill by one failure.
    refill: Duration,
}

/// Clients remembered as blocked at most; past it, expired ones are
/// forgotten first, then (under a flood from very many addresses) all.
const MAX_BLOCKED: usize = 100_000;

impl AuthGuard {
    /// `per_client_per_minute` failures per client (a burst of that many,
    /// refilled evenly over the minute), `overall_per_second` from all.
    pub fn new(per_client_per_minute: u32, overall_per_second: u32) -> Self {
        let per_minute = NonZeroU32::new(per_client_per_minute).unwrap_or(NonZeroU32::MIN);
        let per_second = NonZeroU32::new(overall_per_second).unwrap_or(NonZeroU32::MIN);
        Self {
            per_client: RateLimiter::keyed(Quota::per_minute(per_minute)),
            overall: RateLimiter::direct(Quota::per_second(per_second)),
            checks: std::sync::atomic::AtomicU64::new(0),
            blocked: Mutex::new(HashMap::new()),
            refill: Duration::from_secs(60) / per_minute.get(),
        }
    }

    /// Is `addr` past its allowance right now? Costs no allowance.
    pub fn blocked(&self, addr: Option<IpAddr>) -> bool {
        let Some(addr) = addr else { return false };
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        match blocked.get(&key(addr)) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                blocked.remove(&key(addr));
                false
            }
            None => false,
        }
    }

    fn block(&self, addr: IpAddr) {
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        if blocked.len() >= MAX_BLOCKED {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
            if blocked.len() >= MAX_BLOCKED {
                blocked.clear();
            }
        }
        blocked.insert(key(addr), Instant::now() + self.refill);
    }

    /// Counts one failure of `addr`: `true` while it is within the
    /// allowance (answer 401 and audit it), `false` past it (answer 429).
    pub fn failure(&self, addr: Option<IpAddr>) -> bool {
        if self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % 10_000
            == 9_999
        {
            self.per_client.retain_recent();
        }
        let client_ok = match addr {
            Some(a) => {
                let ok = self.per_client.check_key(&key(a)).is_ok();
                if !ok {
                    self.block(a);
                }
                ok
            }
            None => true,
        };
        client_ok && self.overall.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_past_its_allowance_is_refused_and_others_are_not() {
        let guard = AuthGuard::new(3, 1000);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!((0..3).all(|_| guard.failure(Some(a))));
        assert!(!guard.failure(Some(a)));
        assert!(guard.failure(Some(b)));
    }

    #[test]
    fn a_blocked_client_is_known_without_spending_its_allowance() {
        let guard = AuthGuard::new(60, 1000);
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(!guard.blocked(Some(a)));
        while guard.failure(Some(a)) {}
        assert!(guard.blocked(Some(a)), "past the allowance");
        assert!(!guard.blocked(Some("192.0.2.8".parse().unwrap())));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!guard.blocked(Some(a)), "refilled by one after a second");
    }

    #[test]
    fn the_client_behind_a_trusted_proxy_is_the_last_untrusted_hop() {
        use actix_web::test::TestRequest;
        let proxy: IpNet = "10.0.0.0/8".parse().unwrap();
        let from = |peer: &str, xff: &str| {
            let req = TestRequest::default()
                .peer_addr(peer.parse().unwrap())
                .insert_header(("x-forwarded-for", xff))
                .to_http_request();
            client_addr(&req, std::slice::from_ref(&proxy)).map(|a| a.to_string())
        };
        // Not from a proxy: the header is the client's own invention.
        assert_eq!(
            from("198.51.100.1:1", "1.2.3.4").as_deref(),
            Some("198.51.100.1")
        );
        assert_eq!(
            from("10.0.0.2:1", "1.2.3.4, 203.0.113.5").as_deref(),
            Some("203.0.113.5")
        );
        assert_eq!(
            from("10.0.0.2:1", "203.0.113.5:4711, 10.0.0.3").as_deref(),
            Some("203.0.113.5")
        );
        // Garbage ends the walk: what is left of it cannot be believed.
        assert_eq!(
            from("10.0.0.2:1", "1.2.3.4, unknown, 10.0.0.3").as_deref(),
            Some("10.0.0.3")
        );
    }

    #[test]
    fn forwarded_entries_with_ports_parse_and_garbage_is_none() {
        assert_eq!(
            parse_forwarded(" 203.0.113.9:4711"),
            "203.0.113.9".parse().ok()
        );
        assert_eq!(
            parse_forwarded("[2001:db8::1]:443"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(parse_forwarded("::1"), "::1".parse().ok());
        assert_eq!(parse_forwarded("unknown"), None);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let guard = AuthGuard::new(2, 1000);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other_in_same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(guard.failure(Some(one)));
        assert!(guard.failure(Some(other_in_same_64)));
        assert!(!guard.failure(Some(one)));
    }

    #[test]
    fn many_clients_together_meet_the_overall_limit() {
        let guard = AuthGuard::new(100, 5);
        let passed = (0..50u8)
            .filter(|i| guard.failure(Some(IpAddr::from([198, 51, 100, *i]))))
            .count();
        assert_eq!(passed, 5);
    }
}
