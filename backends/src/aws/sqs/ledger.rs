//! The SQS adapter's local receipt and deduplication ledger.
//!
//! SQS accepts a superseded receipt handle for deletes and visibility changes ("succeeds
//! but the message might not be deleted"), so the adapter remembers the receipts it
//! handed out, and, per deduplication id, the message id of a send within SQS's 5-minute
//! window (a repeated send is answered as a duplicate without calling SQS, exactly what
//! SQS would do with it).
//!
//! A receipt is *unknown* (another process's: passed to SQS unchanged), *live* (received
//! here, the latest receipt of its message; its 12-hour visibility budget counts from
//! then), *retired* (acked, released, dead-lettered, superseded by a later receive of its
//! message, or live for 12 hours) and, 12 hours after retiring, *forgotten*. A
//! deduplication id is *sent* from a send until the window has passed.
//!
//! Invariant: a retired receipt fails [`Ledger::check`] with `fence-lost` (and so never
//! reaches SQS) until it is forgotten; at most one receipt per message is live.

use super::{DEDUP_WINDOW, MAX_TOTAL_VISIBILITY};
use kiro_protocol::{FailureClass, PortError, Timestamp};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Live receipts: receipt → (message id, received at).
    live: HashMap<String, (String, Timestamp)>,
    /// Latest live receipt per message id.
    latest: HashMap<String, String>,
    /// Receipts no longer current → when they were retired.
    retired: HashMap<String, Timestamp>,
    /// Dedup id → (message id, sent at).
    sent: HashMap<String, (String, Timestamp)>,
}

impl Ledger {
    /// Forget retired receipts after 12 hours and sends after the deduplication window;
    /// retire receipts live for 12 hours.
    pub(super) fn prune(&mut self, now: Timestamp) {
        let old = now.minus(MAX_TOTAL_VISIBILITY);
        self.retired.retain(|_, t| *t > old);
        self.sent.retain(|_, (_, t)| now.since(*t) < DEDUP_WINDOW);
        let stale: Vec<String> = self
            .live
            .iter()
            .filter(|(_, (_, t))| *t <= old)
            .map(|(r, _)| r.clone())
            .collect();
        for r in stale {
            self.retire(&r, now);
        }
    }

    /// `receipt` of `message_id` was received at `now`: it is live, and the message's
    /// previous receipt (if another) is retired.
    pub(super) fn received(&mut self, receipt: &str, message_id: &str, now: Timestamp) {
        if let Some(prev) = self
            .latest
            .insert(message_id.to_owned(), receipt.to_owned())
            && prev != receipt
        {
            self.live.remove(&prev);
            self.retired.insert(prev, now);
        }
        self.live
            .insert(receipt.to_owned(), (message_id.to_owned(), now));
    }

    /// `receipt` is no longer current (acked, released, dead-lettered), whoever handed
    /// it out.
    pub(super) fn retire(&mut self, receipt: &str, now: Timestamp) {
        if let Some((id, _)) = self.live.remove(receipt)
            && self.latest.get(&id).map(String::as_str) == Some(receipt)
        {
            self.latest.remove(&id);
        }
        self.retired.insert(receipt.to_owned(), now);
    }

    /// `Ok` unless `receipt` is retired: then the `fence-lost` error to answer locally.
    pub(super) fn check(&self, receipt: &str) -> Result<(), PortError> {
        if self.retired.contains_key(receipt) {
            return Err(stale(receipt));
        }
        Ok(())
    }

    /// What is left at `now` of `receipt`'s 12-hour visibility budget (all of it for a
    /// receipt not live here).
    pub(super) fn visibility_left(&self, receipt: &str, now: Timestamp) -> Duration {
        let used = self
            .live
            .get(receipt)
            .map(|(_, at)| now.since(*at))
            .unwrap_or_default();
        MAX_TOTAL_VISIBILITY.saturating_sub(used)
    }

    /// The message id a send with `dedup` got, if it is remembered (prune first: what
    /// is remembered then is within the window).
    pub(super) fn sent_as(&self, dedup: &str) -> Option<&str> {
        self.sent.get(dedup).map(|(id, _)| id.as_str())
    }

    /// A send with `dedup` got `message_id` at `now`.
    pub(super) fn sent(&mut self, dedup: &str, message_id: &str, now: Timestamp) {
        self.sent
            .insert(dedup.to_owned(), (message_id.to_owned(), now));
    }
}

fn stale(receipt: &str) -> PortError {
    let short: String = receipt.chars().take(12).collect();
    PortError::new(
        FailureClass::FenceLost,
        format!("receipt {short}… is no longer current"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_700_000_000_000);
    const MS: Duration = Duration::from_millis(1);
    const HOUR: Duration = Duration::from_secs(3600);

    fn is_live(l: &Ledger, receipt: &str) -> bool {
        l.check(receipt).is_ok()
    }

    #[test]
    fn an_unknown_receipt_passes_with_its_whole_budget() {
        let l = Ledger::default();
        assert!(l.check("from-another-process").is_ok());
        assert_eq!(
            l.visibility_left("from-another-process", T0),
            MAX_TOTAL_VISIBILITY
        );
    }

    #[test]
    fn a_received_receipt_is_live_and_its_budget_counts_from_the_receive() {
        let mut l = Ledger::default();
        l.received("r1", "m1", T0);
        assert!(is_live(&l, "r1"));
        assert_eq!(l.visibility_left("r1", T0), MAX_TOTAL_VISIBILITY);
        assert_eq!(l.visibility_left("r1", T0.plus(HOUR)), 11 * HOUR);
        assert_eq!(l.visibility_left("r1", T0.plus(12 * HOUR)), Duration::ZERO);
        assert_eq!(l.visibility_left("r1", T0.plus(13 * HOUR)), Duration::ZERO);
    }

    #[test]
    fn a_later_receive_of_the_message_retires_its_earlier_receipt() {
        let mut l = Ledger::default();
        l.received("r1", "m1", T0);
        l.received("r2", "m1", T0.plus(HOUR));
        let e = l.check("r1").unwrap_err();
        assert_eq!(e.class, FailureClass::FenceLost);
        assert!(is_live(&l, "r2"));
        assert_eq!(
            l.visibility_left("r2", T0.plus(2 * HOUR)),
            11 * HOUR,
            "the new receipt's budget counts from its own receive"
        );
        assert_eq!(
            l.visibility_left("r1", T0.plus(2 * HOUR)),
            MAX_TOTAL_VISIBILITY,
            "a retired receipt is no longer live"
        );
    }

    #[test]
    fn receiving_the_same_receipt_again_keeps_it_live_from_the_later_receive() {
        let mut l = Ledger::default();
        l.received("r1", "m1", T0);
        l.received("r1", "m1", T0.plus(HOUR));
        assert!(is_live(&l, "r1"));
        assert_eq!(l.visibility_left("r1", T0.plus(HOUR)), MAX_TOTAL_VISIBILITY);
    }

    #[test]
    fn receipts_of_different_messages_are_independent() {
        let mut l = Ledger::default();
        l.received("r1", "m1", T0);
        l.received("r2", "m2", T0);
        assert!(is_live(&l, "r1"));
        assert!(is_live(&l, "r2"));
        l.retire("r1", T0);
        assert!(!is_live(&l, "r1"));
        assert!(is_live(&l, "r2"));
    }

    #[test]
    fn a_retired_receipt_fails_and_its_message_can_be_received_again() {
        let mut l = Ledger::default();
        l.received("r1", "m1", T0);
        l.retire("r1", T0.plus(MS));
        let e = l.check("r1").unwrap_err();
        assert_eq!(e.class, FailureClass::FenceLost);
        assert_eq!(l.visibility_left("r1", T0), MAX_TOTAL_VISIBILITY);
        l.received("r2", "m1", T0.plus(HOUR));
        assert!(is_live(&l, "r2"));
        assert!(!is_live(&l, "r1"));
    }

    #[test]
    fn retiring_a_superseded_receipt_again_leaves_the_latest_live() {
        let mut l = Ledger::default();
        l.received("r1", "m1", T0);
        l.received("r2", "m1", T0);
        l.retire("r1", T0);
        assert!(is_live(&l, "r2"));
        // r2 is still the message's latest receipt: the next receive retires it.
        l.received("r3", "m1", T0);
        assert!(!is_live(&l, "r2"));
        assert!(is_live(&l, "r3"));
    }

    #[test]
    fn a_receipt_from_another_process_is_retired_once_used_here() {
        let mut l = Ledger::default();
        l.retire("foreign-receipt", T0);
        assert!(!is_live(&l, "foreign-receipt"));
    }

    #[test]
    fn the_fence_lost_error_names_the_start_of_the_receipt() {
        let mut l = Ledger::default();
        l.retire("abcdefghijklmnopqrstuvwxyz", T0);
        let e = l.check("abcdefghijklmnopqrstuvwxyz").unwrap_err();
        assert_eq!(e.class, FailureClass::FenceLost);
        assert!(
            e.to_string()
                .contains("receipt abcdefghijkl… is no longer current"),
            "{e}"
        );
    }

    #[test]
    fn a_retired_receipt_is_forgotten_12_hours_after_it_was_retired() {
        let mut l = Ledger::default();
        l.received("r1", "m1", T0);
        l.retire("r1", T0);
        l.prune(T0.plus(12 * HOUR - MS));
        assert!(!is_live(&l, "r1"));
        l.prune(T0.plus(12 * HOUR));
        assert!(is_live(&l, "r1"), "forgotten: passed to SQS again");
    }

    #[test]
    fn a_receipt_live_for_12_hours_is_retired_then_forgotten() {
        let mut l = Ledger::default();
        l.received("r1", "m1", T0);
        l.prune(T0.plus(12 * HOUR - MS));
        assert!(is_live(&l, "r1"));
        l.prune(T0.plus(12 * HOUR));
        assert!(!is_live(&l, "r1"));
        // Its message is received anew without touching the retired receipt.
        l.received("r2", "m1", T0.plus(12 * HOUR));
        assert!(is_live(&l, "r2"));
        l.prune(T0.plus(24 * HOUR));
        assert!(is_live(&l, "r1"), "retired at 12 h, forgotten at 24 h");
        assert!(!is_live(&l, "r2"), "r2 was live for 12 hours");
    }

    #[test]
    fn a_send_is_remembered_for_the_dedup_window() {
        let mut l = Ledger::default();
        assert_eq!(l.sent_as("d1"), None);
        l.sent("d1", "m1", T0);
        assert_eq!(l.sent_as("d1"), Some("m1"));
        assert_eq!(l.sent_as("d2"), None);
        l.prune(T0.plus(DEDUP_WINDOW - MS));
        assert_eq!(l.sent_as("d1"), Some("m1"));
        l.prune(T0.plus(DEDUP_WINDOW));
        assert_eq!(l.sent_as("d1"), None);
    }

    #[test]
    fn a_later_send_with_the_same_dedup_id_replaces_the_remembered_one() {
        let mut l = Ledger::default();
        l.sent("d1", "m1", T0);
        l.prune(T0.plus(DEDUP_WINDOW));
        l.sent("d1", "m2", T0.plus(DEDUP_WINDOW));
        assert_eq!(l.sent_as("d1"), Some("m2"));
    }
}
