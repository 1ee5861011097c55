//! The trace-context carrier.
//!
//! A work item is one trace from the producer's enqueue to the worker's last step. The
//! context travels as a W3C `traceparent` (+ `tracestate`) and, for AWS, as an X-Ray
//! `AWSTraceHeader`; this module only carries and checks the strings, it does not
//! create spans.

use serde::{Deserialize, Serialize};

/// Trace context carried by a message, a job record and a build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawTraceContext")]
pub struct TraceContext {
    /// W3C `traceparent`: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// X-Ray `AWSTraceHeader`: `Root=1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx;Parent=…;Sampled=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xray: Option<String>,
}

/// The longest `tracestate` or X-Ray header kept (W3C allows 32 list members of at most
/// 256 characters for tracestate; X-Ray headers are far shorter).
pub const MAX_HEADER: usize = 512;

/// A trace context as found in a message or a record, before checking.
#[derive(Deserialize)]
struct RawTraceContext {
    #[serde(default)]
    traceparent: Option<String>,
    #[serde(default)]
    tracestate: Option<String>,
    #[serde(default)]
    xray: Option<String>,
}

/// Decoding keeps only well-formed values: an invalid traceparent, or a tracestate / X-Ray
/// header that is overlong or holds anything but visible ASCII and spaces, is dropped
/// (a trace context is advisory: a bad one costs the trace link, never the item, and never
/// reaches a log line or a build's environment).
impl From<RawTraceContext> for TraceContext {
    fn from(raw: RawTraceContext) -> Self {
        let header = |v: Option<String>| {
            v.filter(|h| {
                h.len() <= MAX_HEADER && h.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
            })
        };
        TraceContext {
            traceparent: raw
                .traceparent
                .filter(|tp| TraceContext::valid_traceparent(tp)),
            tracestate: header(raw.tracestate),
            xray: header(raw.xray),
        }
    }
}

impl TraceContext {
    /// A context with only a `traceparent`, if it is well-formed.
    pub fn from_traceparent(tp: &str) -> Option<Self> {
        Self::valid_traceparent(tp).then(|| TraceContext {
            traceparent: Some(tp.to_owned()),
            ..Default::default()
        })
    }

    /// Whether `tp` is a well-formed version-00 W3C traceparent with non-zero ids.
    pub fn valid_traceparent(tp: &str) -> bool {
        let parts: Vec<&str> = tp.split('-').collect();
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        parts.len() == 4
            && parts[0] == "00"
            && hex(parts[1], 32)
            && parts[1].bytes().any(|b| b != b'0')
            && hex(parts[2], 16)
            && parts[2].bytes().any(|b| b != b'0')
            && hex(parts[3], 2)
    }

    /// The 32-hex trace id, when a valid traceparent is present.
    pub fn trace_id(&self) -> Option<&str> {
        let tp = self.traceparent.as_deref()?;
        Self::valid_traceparent(tp).then(|| &tp[3..35])
    }

    pub fn is_empty(&self) -> bool {
        self.traceparent.is_none() && self.xray.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_checked() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::from_traceparent(tp).unwrap();
        assert_eq!(ctx.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(TraceContext::from_traceparent("00-0000-00f067aa0ba902b7-01").is_none());
        assert!(
            TraceContext::from_traceparent(
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
            )
            .is_none()
        );
        assert!(TraceContext::from_traceparent("zz; rm -rf").is_none());
    }

    #[test]
    fn decoding_drops_malformed_values_and_keeps_good_ones() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let good: TraceContext = serde_json::from_value(serde_json::json!({
            "traceparent": tp, "tracestate": "a=1,b=2", "xray": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
        }))
        .unwrap();
        assert_eq!(good.traceparent.as_deref(), Some(tp));
        assert_eq!(good.tracestate.as_deref(), Some("a=1,b=2"));
        assert!(good.xray.is_some());
        let bad: TraceContext = serde_json::from_value(serde_json::json!({
            "traceparent": "00-zz-$(id)-01", "tracestate": "a=1\nINFO forged", "xray": "x".repeat(MAX_HEADER + 1)
        }))
        .unwrap();
        assert_eq!(bad, TraceContext::default());
    }
}
