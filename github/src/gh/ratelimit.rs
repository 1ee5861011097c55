//! Rate limits: how long GitHub asked us to wait, and how often we try again.
//!
//! Rules (GitHub's "best practices for using the REST API"):
//! - a 403 or 429 with `retry-after`: wait that many seconds (secondary limit);
//! - a 403 or 429 with `x-ratelimit-remaining: 0`: wait until `x-ratelimit-reset`
//!   (primary limit; epoch seconds, compared with the [`Clock`](kiro_protocol::Clock));
//! - a GraphQL body whose errors have `"type": "RATE_LIMITED"` (GitHub answers 200 or 403):
//!   the same headers, else one minute;
//! - any other 429, or a 403 that says "secondary rate limit": one minute.
//!
//! Invariant: [`wait_hint`] is a pure function of the response and the time, so every rule
//! has a unit test; the waiting itself happens in the client on tokio time, bounded by
//! [`RequestBackoff`].

use http::{HeaderMap, StatusCode};
use kiro_protocol::Timestamp;
use std::time::Duration;

/// How often and how long the client retries one request (the per-call back-off; whether a
/// failed work item is retried is the consumer's `RetryPolicy`, not this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBackoff {
    /// Attempts per request in all (the first one included).
    pub max_attempts: usize,
    /// The first back-off after a transient failure (doubles each time; backon).
    pub min_delay: Duration,
    /// The longest back-off after a transient failure.
    pub max_delay: Duration,
    /// A rate-limit wait longer than this is not waited out: the call fails as
    /// `throttled` and the caller's own schedule (the next producer tick, the consumer's
    /// retry) tries later.
    pub max_rate_limit_wait: Duration,
}

impl Default for RequestBackoff {
    fn default() -> Self {
        RequestBackoff {
            max_attempts: 5,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
        }
    }
}

/// The minimum wait GitHub asks for when it gives no figure.
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn until_reset(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    if header_u64(headers, "x-ratelimit-remaining")? != 0 {
        return None;
    }
    let reset = i64::try_from(header_u64(headers, "x-ratelimit-reset")?).ok()?;
    let reset = Timestamp(reset.saturating_mul(1000));
    // One second of slack: the reset instant is truncated to seconds.
    Some(reset.since(now) + Duration::from_secs(1))
}

/// Whether the body is a GraphQL answer whose errors include `RATE_LIMITED`.
pub fn is_graphql_rate_limited(body: &str) -> bool {
    if !body.contains("RATE_LIMITED") {
        return false;
    }
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors")?.as_array().map(|errs| {
                errs.iter()
                    .any(|e| e.get("type").and_then(|t| t.as_str()) == Some("RATE_LIMITED"))
            })
        })
        .unwrap_or(false)
}

/// How long to wait before retrying this response, or `None` when it is not a rate limit.
pub fn wait_hint(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: Timestamp,
) -> Option<Duration> {
    let limited_status = status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS;
    let graphql_limited = (status.is_success() || limited_status) && is_graphql_rate_limited(body);
    if !limited_status && !graphql_limited {
        return None;
    }
    if let Some(secs) = header_u64(headers, "retry-after") {
        return Some(Duration::from_secs(secs));
    }
    if let Some(d) = until_reset(headers, now) {
        return Some(d);
    }
    let lower = body.to_ascii_lowercase();
    if graphql_limited
        || status == StatusCode::TOO_MANY_REQUESTS
        || lower.contains("secondary rate limit")
        || lower.contains("rate limit exceeded")
    {
        return Some(DEFAULT_RATE_LIMIT_WAIT);
    }
    // A plain 403: permissions, not a rate limit.
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    const NOW: Timestamp = Timestamp(1_767_225_600_000);

    #[test]
    fn secondary_limit_uses_retry_after() {
        let d = wait_hint(StatusCode::FORBIDDEN, &h(&[("retry-after", "17")]), "", NOW);
        assert_eq!(d, Some(Duration::from_secs(17)));
        let d = wait_hint(
            StatusCode::TOO_MANY_REQUESTS,
            &h(&[("retry-after", "3")]),
            "",
            NOW,
        );
        assert_eq!(d, Some(Duration::from_secs(3)));
    }

    #[test]
    fn primary_limit_waits_until_reset() {
        let reset = (NOW.as_secs() + 120).to_string();
        let hs = h(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(
            wait_hint(StatusCode::FORBIDDEN, &hs, "{}", NOW),
            Some(Duration::from_secs(121))
        );
        // Remaining > 0 and no message: a permission problem, not a limit.
        let hs = h(&[
            ("x-ratelimit-remaining", "10"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(
            wait_hint(
                StatusCode::FORBIDDEN,
                &hs,
                "{\"message\":\"Resource not accessible by integration\"}",
                NOW
            ),
            None
        );
    }

    #[test]
    fn graphql_rate_limited_and_fallbacks() {
        let body = r#"{"errors":[{"type":"RATE_LIMITED","message":"API rate limit exceeded for installation ID 1."}]}"#;
        assert_eq!(
            wait_hint(StatusCode::OK, &HeaderMap::new(), body, NOW),
            Some(DEFAULT_RATE_LIMIT_WAIT)
        );
        assert_eq!(
            wait_hint(StatusCode::OK, &HeaderMap::new(), "{\"data\":{}}", NOW),
            None
        );
        assert_eq!(
            wait_hint(
                StatusCode::FORBIDDEN,
                &HeaderMap::new(),
                "You have exceeded a secondary rate limit",
                NOW
            ),
            Some(DEFAULT_RATE_LIMIT_WAIT)
        );
        assert_eq!(
            wait_hint(
                StatusCode::INTERNAL_SERVER_ERROR,
                &HeaderMap::new(),
                "",
                NOW
            ),
            None
        );
    }
}
