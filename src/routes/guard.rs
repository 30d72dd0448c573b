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

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;

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
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|a| !is_trusted(*a, trusted))
            .unwrap_or(peer),
    )
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
}

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
        }
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
            Some(a) => self.per_client.check_key(&key(a)).is_ok(),
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
