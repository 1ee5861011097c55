//! Tests of the consumer's settings: defaults, ranges, and the binary's defaults being
//! the engine's own.

use super::forge::forge_backoff;
use super::*;
use clap::{CommandFactory, FromArgMatches};
use kiro_github::gh::ProjectRef;

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
    let config = Config::new(&cli.common, cli.aws, *args).unwrap();
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
    assert_eq!(engine.board_every, None, "every poll round");
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
        (e.max_jobs, d, more, e.board_every, e.retry.clone())
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

/// `run`'s configuration from `args` alone (the test's environment is not read).
fn run_config(args: &[&str]) -> Result<Config, InvalidSetting> {
    let mut argv = vec!["kiro-consumer", "run"];
    argv.extend_from_slice(args);
    let m = Cli::command()
        .mut_args(|a| a.env(None))
        .mut_subcommand("run", |c| c.mut_args(|a| a.env(None)))
        .try_get_matches_from(argv)
        .unwrap();
    let cli = Cli::from_arg_matches(&m).unwrap();
    let Command::Run(args) = cli.command else {
        panic!("run");
    };
    Config::new(&cli.common, cli.aws, *args)
}

#[test]
fn the_github_forge_reads_the_project_with_the_consumers_own_backoff() {
    let c = run_config(&[
        "--forge",
        "github",
        "--github-project",
        "orgs/acme/7",
        "--github-token",
        "ghp_consumertoken123",
    ])
    .unwrap();
    let ForgeConfig::Github { project, settings } = &c.forge else {
        panic!("github: {:?}", c.forge);
    };
    assert_eq!(project, &ProjectRef::parse("orgs/acme/7").unwrap());
    // A rate limit is never waited out on the loop that renews the leases.
    assert_eq!(settings.retry, forge_backoff());
    assert_eq!(settings.retry.max_rate_limit_wait, Duration::ZERO);
    assert!(!format!("{c:?}").contains("ghp_consumertoken123"));
    // GitHub's board is read every 30s (rate-limited).
    assert_eq!(c.board_every, Some(Duration::from_secs(30)));
    let set = run_config(&[
        "--forge",
        "github",
        "--github-project",
        "orgs/acme/7",
        "--github-token",
        "t",
        "--board-every",
        "5s",
    ])
    .unwrap();
    assert_eq!(
        set.engine(BTreeMap::new(), None).board_every,
        Some(Duration::from_secs(5))
    );
    // The embedded board file is read every poll round.
    let embedded = run_config(&["--board", "board.json", "--poll-every", "2s"]).unwrap();
    assert_eq!(embedded.board_every, None);
    assert!(matches!(
        embedded.forge,
        ForgeConfig::Embedded {
            board_file: Some(_)
        }
    ));
}

#[test]
fn a_github_forge_without_what_it_needs_is_refused_by_name() {
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["--forge", "github", "--github-token", "t"],
            &["KIRO_GITHUB_PROJECT"],
        ),
        (
            &[
                "--forge",
                "github",
                "--github-project",
                "acme",
                "--github-token",
                "t",
            ],
            &["KIRO_GITHUB_PROJECT", "orgs/<owner>/<number>"],
        ),
        (
            &["--forge", "github", "--github-project", "orgs/acme/7"],
            &["GITHUB_TOKEN"],
        ),
        (
            &[
                "--forge",
                "github",
                "--github-project",
                "orgs/acme/7",
                "--github-token",
                "t",
                "--board",
                "board.json",
            ],
            &["KIRO_BOARD_FILE", "--forge github"],
        ),
        (
            &["--board-every", "50ms"],
            &["--board-every", "KIRO_BOARD_EVERY"],
        ),
    ];
    for (args, names) in cases {
        let e = run_config(args).unwrap_err();
        for name in names {
            assert!(e.0.contains(name), "{args:?}: {e}");
        }
    }
}
