//! What keeps the server's own state bounded, whatever its callers send.
//!
//! - Rate limits ([`RateLimits`]): every request takes one unit of a budget. A request with a verified
//!   credential takes from its caller's (a user's subject, an API key, the static token; mutations also
//!   from the caller's mutation budget); any other request — no credential, a refused credential, a public
//!   endpoint — from its client address's (IPv6 addresses by their /64). Each limiter holds at most
//!   [`MAX_KEYS`] keys: forgotten once their budget is full again, and past the bound new keys share one
//!   overflow budget.
//! - Metric labels: [`method_label`] turns any method outside the standard ones into `other`; routes are
//!   their templates (or `unmatched`).
//! - Request ids: [`sanitise_request_id`] drops a client's `x-request-id` unless it is short printable ASCII.
//! - Change-feed streams: [`StreamSlots`] counts each caller's open streams.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::error::ApiError;

/// Most keys one rate limiter remembers.
pub(crate) const MAX_KEYS: usize = 100_000;
/// Longest client `x-request-id` kept, in bytes.
pub(crate) const MAX_REQUEST_ID_LEN: usize = 64;

/// The key every new caller shares once a limiter is full.
const OVERFLOW_KEY: &str = "overflow";

/// One keyed rate limiter whose memory is bounded.
pub(crate) struct Limiter {
    inner: DefaultKeyedRateLimiter<String>,
    /// When the limiter was last trimmed because it was full, in seconds since the Unix epoch.
    trimmed: AtomicU64,
}

impl Limiter {
    fn new(per_minute: NonZeroU32) -> Self {
        Limiter {
            inner: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute)),
            trimmed: AtomicU64::new(0),
        }
    }

    /// Takes one unit of `key`'s budget, or says how long to wait.
    fn check(&self, key: &str) -> Result<(), Duration> {
        let mut key = key;
        if self.inner.len() >= MAX_KEYS {
            // Full: forget the callers whose budget is full again (at most once a second), and send new ones
            // to the shared overflow budget while it stays full.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if self.trimmed.swap(now, Ordering::AcqRel) != now {
                self.inner.retain_recent();
            }
            if self.inner.len() >= MAX_KEYS {
                key = OVERFLOW_KEY;
            }
        }
        self.inner
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn trim(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// Who a request is charged to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Charge<'a> {
    /// A verified caller (its audit-log name); `mutation` also takes from its mutation budget.
    Caller { key: &'a str, mutation: bool },
    /// No verified caller: the client's address.
    Client(Option<IpAddr>),
}

/// The server's rate limits.
pub(crate) struct RateLimits {
    requests: Option<Limiter>,
    mutations: Option<Limiter>,
    clients: Option<Limiter>,
}

impl RateLimits {
    pub(crate) fn new(requests_per_minute: Option<NonZeroU32>, mutations_per_minute: Option<NonZeroU32>) -> Self {
        RateLimits {
            requests: requests_per_minute.map(Limiter::new),
            mutations: mutations_per_minute.map(Limiter::new),
            clients: requests_per_minute.map(Limiter::new),
        }
    }

    /// Takes one unit of the budgets `charge` names, or refuses with 429 and `Retry-After`.
    pub(crate) fn check(&self, charge: Charge<'_>) -> Result<(), ApiError> {
        let checked = match charge {
            Charge::Caller { key, mutation } => {
                let key = format!("caller:{key}");
                let requests = self.requests.as_ref().map_or(Ok(()), |l| l.check(&key));
                requests.and_then(|()| match (&self.mutations, mutation) {
                    (Some(l), true) => l.check(&key),
                    _ => Ok(()),
                })
            }
            Charge::Client(ip) => self.clients.as_ref().map_or(Ok(()), |l| l.check(&client_key(ip))),
        };
        checked.map_err(|wait| {
            metrics::counter!("heimdall_rate_limited_total").increment(1);
            ApiError::rate_limited(wait.as_secs_f64().ceil() as u64)
        })
    }

    /// Forgets the keys whose budget is full again.
    pub(crate) fn trim(&self) {
        for l in [&self.requests, &self.mutations, &self.clients].into_iter().flatten() {
            l.trim();
        }
    }
}

/// A client address as a rate-limit key: an IPv4 address, or an IPv6 address's /64 (one host holds a whole
/// /64, so a finer key would let it take as many budgets as it likes).
pub(crate) fn client_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => format!("ip:{v4}"),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "ip:unknown".to_owned(),
    }
}

/// The client's address of a request, when the server knows it.
pub(crate) fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// A method as a metric label: the standard methods by name, any other as `other`.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Whether a client's request id may be kept: 1 to [`MAX_REQUEST_ID_LEN`] bytes of printable ASCII, no
/// spaces.
pub(crate) fn acceptable_request_id(value: &HeaderValue) -> bool {
    let b = value.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID_LEN && b.iter().all(|c| c.is_ascii_graphic())
}

/// Drops a client's `x-request-id` that is not acceptable (too long, or not printable ASCII), and all
/// but the first, so that the server makes a fresh one.
pub(crate) async fn sanitise_request_id(mut request: Request, next: Next) -> Response {
    let headers = request.headers_mut();
    let keep = {
        let mut values = headers.get_all(super::REQUEST_ID).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => acceptable_request_id(v),
            (None, _) => true,
            _ => false,
        }
    };
    if !keep {
        headers.remove(super::REQUEST_ID);
    }
    next.run(request).await
}

/// Each caller's open change-feed streams.
#[derive(Clone)]
pub(crate) struct StreamSlots {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream; dropping it frees its slot.
pub(crate) struct StreamSlot {
    key: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl StreamSlots {
    pub(crate) fn new(max: usize) -> Self {
        StreamSlots {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for one more stream of `caller`, or 429 when he holds the most already.
    pub(crate) fn take(&self, caller: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().map_err(|_| ApiError::internal())?;
        let n = open.entry(caller.to_owned()).or_default();
        if *n >= self.max {
            metrics::counter!("heimdall_rate_limited_total").increment(1);
            return Err(ApiError::too_many_streams(self.max));
        }
        *n += 1;
        Ok(StreamSlot {
            key: caller.to_owned(),
            open: self.open.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(n) = open.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_short_printable_ascii() {
        let ok = |s: &str| acceptable_request_id(&HeaderValue::from_str(s).unwrap());
        assert!(ok("abc-123_X.y:z"));
        assert!(ok(&"a".repeat(MAX_REQUEST_ID_LEN)));
        assert!(!ok(&"a".repeat(MAX_REQUEST_ID_LEN + 1)));
        assert!(!ok("has space"));
        assert!(!ok("tab\there"));
        assert!(!ok(""));
        assert!(!acceptable_request_id(
            &HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()
        ));
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"FOO").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"BAR").unwrap()), "other");
    }

    #[test]
    fn client_keys_group_ipv6_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(client_key(Some(a)), client_key(Some(b)));
        assert_eq!(client_key(Some("::ffff:10.0.0.1".parse().unwrap())), "ip:10.0.0.1");
    }

    #[test]
    fn a_full_limiter_sends_new_keys_to_one_overflow_budget() {
        let l = Limiter::new(NonZeroU32::new(1).unwrap());
        for i in 0..MAX_KEYS + 50 {
            let _ = l.check(&format!("k{i}"));
        }
        assert!(l.len() <= MAX_KEYS + 1, "{}", l.len());
    }

    #[test]
    fn stream_slots_are_counted_and_freed() {
        let slots = StreamSlots::new(2);
        let a = slots.take("alice").unwrap();
        let _b = slots.take("alice").unwrap();
        assert!(slots.take("alice").is_err());
        assert!(slots.take("bob").is_ok());
        drop(a);
        assert!(slots.take("alice").is_ok());
        assert!(
            slots.open.lock().unwrap().get("bob").is_none(),
            "a caller without streams is forgotten"
        );
    }
}
