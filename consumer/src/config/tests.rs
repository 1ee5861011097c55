//! Tests of the consumer's settings: defaults, ranges, and the binary's defaults being
//! the engine's own.

use super::*;
use clap::{CommandFactory, FromArgMatches};

#[test]
fn codebuild_gets_a_timeout_only_when_one_is_set_and_within_bounds() {
    let m = |n: u64| Duration::from_secs(n * 60);
    assert_eq!(build_timeout(BuildRunnerKind::Codebuild, None), Ok(None));
    assert_eq!(
        build_timeout(BuildRunnerKind::Codebuild, Some(m(90))),
        Ok(Some(m(90)))
    );
    assert_eq!(
        build_timeout(BuildRunnerKind::Codebuild, Some(m(5))),
        Ok(Some(m(5)))
    );
    assert_eq!(
        build_timeout(BuildRunnerKind::Codebuild, Some(m(36 * 60))),
        Ok(Some(m(36 * 60)))
    );
    for bad in [Duration::from_secs(299), m(36 * 60 + 1)] {
        let e = build_timeout(BuildRunnerKind::Codebuild, Some(bad)).unwrap_err();
        assert!(
            e.0.contains("--build-timeout") && e.0.contains("KIRO_BUILD_TIMEOUT"),
            "{e}"
        );
        assert!(e.0.contains("5m to 36h"), "{e}");
    }
}

#[test]
fn the_local_runner_keeps_a_default() {
    assert_eq!(
        build_timeout(BuildRunnerKind::Local, None),
        Ok(Some(LOCAL_BUILD_TIMEOUT))
    );
    assert_eq!(
        build_timeout(BuildRunnerKind::Local, Some(Duration::from_secs(30))),
        Ok(Some(Duration::from_secs(30)))
    );
}

#[test]
fn the_defaults_parse_and_run_wires_with_them() {
    Timing::default();
    let cli = Cli::command()
        .mut_args(|a| a.env(None))
        .mut_subcommand("run", |c| c.mut_args(|a| a.env(None)))
        .try_get_matches_from(["kiro-consumer", "run"])
        .unwrap();
    let cli = Cli::from_arg_matches(&cli).unwrap();
    let Command::Run(args) = cli.command else {
        panic!("run");
    };
    let config = Config::new(&cli.common, cli.aws, args).unwrap();
    assert_eq!(config.timing, Timing::default());
    let engine = config.engine(BTreeMap::new(), None);
    assert_eq!(engine.lease_ttl, Duration::from_secs(60));
    assert_eq!(engine.renew_every, Duration::from_secs(20));
    assert_eq!(engine.safety_margin, Duration::from_secs(6));
    assert_eq!(engine.contention_delay, Duration::from_secs(60));
    assert_eq!(engine.visibility, Duration::from_secs(300));
    assert_eq!(engine.build_timeout, Some(LOCAL_BUILD_TIMEOUT));
    assert_eq!(engine.retry.max_attempts, 3);
    assert_eq!(engine.receive_wait, Duration::from_secs(20));
    assert_eq!(engine.receive_gap, Duration::from_secs(5));
    assert_eq!(engine.poll_every, Duration::from_secs(10));
    assert_eq!(
        engine.item_agent_budget,
        EngineConfig::default().item_agent_budget
    );
    // The engine's own default (what the benchmarks run) is the binary's.
    let (e, own) = (&engine, EngineConfig::default());
    let timing = |e: &EngineConfig| {
        let d = [e.receive_wait, e.receive_gap, e.lease_ttl, e.visibility];
        let d = (d, e.renew_every);
        let more = [e.safety_margin, e.poll_every, e.contention_delay];
        (e.max_jobs, d, more, e.retry.clone())
    };
    assert_eq!(timing(&own), timing(e));
    Cli::command().debug_assert();
}

#[test]
fn an_unset_timeout_parses_as_none() {
    let cli = Cli::try_parse_from(["kiro-consumer", "run"]).unwrap();
    let Command::Run(args) = cli.command else {
        panic!("run");
    };
    // Only when KIRO_BUILD_TIMEOUT is not in the test's environment.
    if std::env::var_os("KIRO_BUILD_TIMEOUT").is_none() {
        assert_eq!(args.build_timeout, None);
    }
}
