//! Contract test suites, one per port, written as reusable async functions so the
//! embedded adapters, the AWS adapters, the local build runner and the in-memory runner
//! run exactly the same checks.
//!
//! A check is a `pub async fn name(h: &dyn XHarness)` of its suite; an adapter's tests
//! run every check with one macro call, which makes one `#[tokio::test]` per check:
//!
//! ```text
//! kiro_backends::queue_contract!(Embedded::new());
//! kiro_backends::lease_contract!(MotoLeases, #[tokio::test(flavor = "multi_thread")]);
//! kiro_backends::build_contract!(Local::new(), skip [a_started_build_is_found_by_its_key]);
//! ```
//!
//! The harness expression is evaluated afresh in each test. `skip [..]` leaves out
//! checks an adapter cannot run (each must name a check of the suite, or the call does
//! not compile); say why next to the call.
//!
//! A suite is one file (`build.rs`) or, split by concept, a directory (`queue/`,
//! `lease/`) whose `mod.rs` re-exports every check.
//!
//! Invariant: each macro's list of checks is the one list of its suite (every file of
//! it) — a check missing from it fails this module's tests.

pub mod build;
pub mod lease;
pub mod queue;

/// Makes one test per check of the `WorkQueue` suite ([`queue`]) against the harness
/// expression; see the [module documentation](crate::testing::contract).
#[macro_export]
macro_rules! queue_contract {
    (@checks) => {
        $crate::queue_contract!(@cases [names]);
    };
    (@cases [$($mode:tt)*]) => {
        $crate::__contract_tests!($($mode)* [
            per_group_order,
            group_blocked_while_in_flight,
            other_groups_not_blocked,
            visibility_expiry_redelivers,
            extend_keeps_message_invisible,
            stale_receipt_fails_and_changes_nothing,
            ack_batch_settles_each_receipt,
            dedup_holds_after_delete,
            dedup_expires_after_window,
            release_with_delay,
            dead_letter_list_and_replay,
            replay_selection_and_dry_run,
            dlq_listing_is_complete_or_says_so,
            replay_reaches_every_letter_of_a_group,
            a_stopped_replay_leaves_each_letter_in_one_queue,
            redrive_moves_everything,
            purge_deletes_every_dead_letter,
            depth_counts,
            trace_and_attributes_round_trip,
        ]);
    };
    ($h:expr $(, skip [$($skip:ident),* $(,)?])? $(,)?) => {
        $crate::queue_contract!($h, #[tokio::test] $(, skip [$($skip),*])?);
    };
    ($h:expr, #[$attr:meta] $(, skip [$($skip:ident),* $(,)?])? $(,)?) => {
        $crate::queue_contract!(@cases [tests [$] queue [$attr] ($h) [$($($skip),*)?]]);
    };
}

/// Makes one test per check of the `LeaseStore` suite ([`lease`]) against the harness
/// expression; see the [module documentation](crate::testing::contract).
#[macro_export]
macro_rules! lease_contract {
    (@checks) => {
        $crate::lease_contract!(@cases [names]);
    };
    (@cases [$($mode:tt)*]) => {
        $crate::__contract_tests!($($mode)* [
            fence_strictly_increases,
            held_lease_reports_holder,
            expired_lease_can_be_taken_after_skew,
            stale_fence_cannot_write,
            release_lets_next_acquire_at_once,
            one_renewal_keeps_every_lease,
            session_lifecycle,
            a_holder_without_a_session_row_is_judged_by_its_row,
            released_lease_cannot_be_written,
            record_job_jobs_round_trip,
            record_new_creates_only_once,
            record_and_release_is_one_write,
            cancel_bumps_the_fence_and_fences_out_the_holder,
            cancel_leaves_another_items_live_job_alone,
        ]);
    };
    ($h:expr $(, skip [$($skip:ident),* $(,)?])? $(,)?) => {
        $crate::lease_contract!($h, #[tokio::test] $(, skip [$($skip),*])?);
    };
    ($h:expr, #[$attr:meta] $(, skip [$($skip:ident),* $(,)?])? $(,)?) => {
        $crate::lease_contract!(@cases [tests [$] lease [$attr] ($h) [$($($skip),*)?]]);
    };
}

/// Makes one test per check of the `BuildRunner` suite ([`build`]) against the harness
/// expression; see the [module documentation](crate::testing::contract).
#[macro_export]
macro_rules! build_contract {
    (@checks) => {
        $crate::build_contract!(@cases [names]);
    };
    (@cases [$($mode:tt)*]) => {
        $crate::__contract_tests!($($mode)* [
            same_key_same_build,
            same_key_other_parameters_never_starts_a_second_build,
            a_started_build_is_found_by_its_key,
            status_answers_many_ids_at_once,
            succeeding_build_exports_variables,
            failing_build_keeps_exported_variables,
            stop_ends_stopped,
            unknown_id_is_absent,
        ]);
    };
    ($h:expr $(, skip [$($skip:ident),* $(,)?])? $(,)?) => {
        $crate::build_contract!($h, #[tokio::test] $(, skip [$($skip),*])?);
    };
    ($h:expr, #[$attr:meta] $(, skip [$($skip:ident),* $(,)?])? $(,)?) => {
        $crate::build_contract!(@cases [tests [$] build [$attr] ($h) [$($($skip),*)?]]);
    };
}

/// The expansion shared by the contract macros (`@cases` holds each suite's list): a test
/// per check not skipped, or (`@checks`, for this module's tests) the checks' names as
/// `CHECKS`. `$d` is a `$` token (handed in as `[$]`), so the local macro can match the
/// skipped names.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_tests {
    (names [$($case:ident),* $(,)?]) => {
        const CHECKS: &[&str] = &[$(stringify!($case)),*];
    };
    (tests [$d:tt] $suite:ident [$attr:meta] ($h:expr) [$($skip:ident),*] [$($case:ident),* $(,)?]) => {
        $(
            #[allow(unused_imports)]
            use $crate::testing::contract::$suite::$skip as _;
        )*
        macro_rules! __contract_case {
            $( ($skip) => {}; )*
            ($d case:ident) => {
                #[$attr]
                async fn $d case() {
                    $crate::testing::contract::$suite::$d case(&$h).await;
                }
            };
        }
        $( __contract_case!($case); )*
    };
}

#[cfg(test)]
mod tests {
    /// The checks of a suite: its `pub async fn name(h: &dyn <harness>)` functions, in
    /// `<suite>.rs` or, for a suite split by concept, in every file of its directory.
    fn checks_in(suite: &str, harness: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/testing/contract");
        let single = dir.join(format!("{suite}.rs"));
        let files: Vec<std::path::PathBuf> = if single.exists() {
            vec![single]
        } else {
            std::fs::read_dir(dir.join(suite))
                .unwrap_or_else(|e| panic!("the {suite} suite's directory: {e}"))
                .map(|f| f.expect("a directory entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                .collect()
        };
        let tail = format!("(h: &dyn {harness}) {{");
        let mut names: Vec<String> = Vec::new();
        for file in files {
            let source = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            names.extend(
                source
                    .lines()
                    .filter_map(|l| l.strip_prefix("pub async fn ")?.strip_suffix(&tail))
                    .map(str::to_owned),
            );
        }
        names.sort();
        names
    }

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn every_check_of_the_queue_suite_is_in_its_macro() {
        crate::queue_contract!(@checks);
        let found = checks_in("queue", "QueueHarness");
        assert_eq!(found.len(), 19, "{found:?}");
        assert_eq!(found, sorted(CHECKS));
    }

    #[test]
    fn every_check_of_the_lease_suite_is_in_its_macro() {
        crate::lease_contract!(@checks);
        let found = checks_in("lease", "LeaseHarness");
        assert_eq!(found.len(), 14, "{found:?}");
        assert_eq!(found, sorted(CHECKS));
    }

    #[test]
    fn every_check_of_the_build_suite_is_in_its_macro() {
        crate::build_contract!(@checks);
        let found = checks_in("build", "BuildHarness");
        assert_eq!(found.len(), 8, "{found:?}");
        assert_eq!(found, sorted(CHECKS));
    }
}
