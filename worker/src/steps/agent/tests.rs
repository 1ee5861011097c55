//! Unit tests of the agent step.

use super::*;

fn flags() -> KiroFlags<'static> {
    KiroFlags {
        agent: None,
        harness: Harness::V3,
        model: None,
    }
}

#[test]
fn kiro_cli_gets_its_headless_flags() {
    let c = AgentCommand::parse("kiro-cli", flags()).unwrap();
    assert!(c.kiro);
    assert_eq!(
        c.args,
        [
            "chat",
            "--no-interactive",
            "--trust-all-tools",
            "--wrap",
            "never",
            "--v3"
        ]
    );
    let c = AgentCommand::parse(
        "/opt/bin/kiro-cli chat -a --non-interactive --wrap=auto --v2 --agent mine",
        KiroFlags {
            agent: Some("other"),
            harness: Harness::V3,
            model: Some("claude-sonnet-4"),
        },
    )
    .unwrap();
    assert_eq!(
        c.args,
        [
            "chat",
            "-a",
            "--non-interactive",
            "--wrap=auto",
            "--v2",
            "--agent",
            "mine",
            "--model",
            "claude-sonnet-4"
        ]
    );
    let c = AgentCommand::parse(
        "kiro-cli chat --no-interactive",
        KiroFlags {
            agent: Some("reviewer"),
            harness: Harness::None,
            model: None,
        },
    )
    .unwrap();
    assert_eq!(
        c.args,
        [
            "chat",
            "--no-interactive",
            "--trust-all-tools",
            "--wrap",
            "never",
            "--agent",
            "reviewer"
        ]
    );
}

#[test]
fn other_agents_are_left_alone() {
    let c = AgentCommand::parse("node 'my agent.mjs' --x", flags()).unwrap();
    assert!(!c.kiro);
    assert_eq!(c.program, "node");
    assert_eq!(c.args, ["my agent.mjs", "--x"]);
    assert_eq!(
        AgentCommand::parse("  ", flags()).unwrap_err().reason,
        "KIRO_AGENT_CMD is empty"
    );
    assert_eq!(
        AgentCommand::parse("a 'b", flags()).unwrap_err().class,
        FailureClass::PermanentInput
    );
}

#[test]
fn preflight_defaults_follow_the_program() {
    let mut cfg = Config::defaults();
    assert!(Agent::from_config(&cfg, []).unwrap().preflight.is_some());
    cfg.agent_cmd = "node agent.mjs".into();
    assert!(Agent::from_config(&cfg, []).unwrap().preflight.is_none());
    cfg.agent_preflight = crate::config::Toggle::On;
    assert_eq!(
        Agent::from_config(&cfg, []).unwrap().preflight,
        Some(Duration::from_secs(30))
    );
    cfg.agent_cmd = "kiro-cli".into();
    cfg.agent_preflight = crate::config::Toggle::Off;
    assert!(Agent::from_config(&cfg, []).unwrap().preflight.is_none());
}

fn captured(exit: Exit, tail: &[&str]) -> Captured {
    Captured {
        exit,
        tail: tail.iter().map(|s| (*s).to_owned()).collect(),
        pid: None,
        lines: tail.len(),
    }
}

#[test]
fn exit_codes_are_mapped() {
    let limit = Duration::from_secs(60);
    let class = |c: Captured| judge_exit(&c, limit).unwrap_err().class;
    assert!(judge_exit(&captured(Exit::Code(0), &["done"]), limit).is_ok());
    assert_eq!(
        class(captured(Exit::Code(1), &["boom"])),
        FailureClass::AgentFailed
    );
    assert_eq!(
        class(captured(Exit::Code(3), &[])),
        FailureClass::AgentFailed
    );
    assert_eq!(
        class(captured(Exit::Code(4), &[])),
        FailureClass::PermanentInput
    );
    assert_eq!(
        class(captured(Exit::Code(9), &[])),
        FailureClass::AgentFailed
    );
    assert_eq!(
        class(captured(Exit::Signal(9), &[])),
        FailureClass::AgentFailed
    );
    assert_eq!(
        judge_exit(&captured(Exit::TimedOut, &[]), limit)
            .unwrap_err()
            .reason,
        "agent timed out after 1m"
    );
    // Kiro's invalid key: exit 0, nothing on stdout, an auth line on stderr.
    assert_eq!(
        class(captured(Exit::Code(0), &["error: Invalid API key"])),
        FailureClass::Auth
    );
    // A long transcript that mentions the words is a normal run.
    let mut long = captured(Exit::Code(0), &["handle 401 unauthorized responses"]);
    long.lines = 500;
    assert!(judge_exit(&long, limit).is_ok());
}

/// A stand-in agent dumps its environment: exactly the allow-list plus what the
/// worker sets, never a cloud credential, the GitHub token or a KIRO_* internal.
#[tokio::test]
async fn the_agent_gets_exactly_the_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("env.txt");
    let parent: Vec<(std::ffi::OsString, std::ffi::OsString)> = [
        ("PATH", std::env::var("PATH").unwrap_or_default().as_str()),
        ("HOME", "/root"),
        ("LC_ALL", "C.UTF-8"),
        ("CI", "true"),
        ("https_proxy", "http://proxy:3128"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjEXAMPLE"),
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://169.254.170.23/v1/creds",
        ),
        ("ECS_CONTAINER_METADATA_URI", "http://169.254.170.2/v3"),
        ("GITHUB_TOKEN", "ghp_abcdefghijklmnop"),
        ("GH_TOKEN", "ghp_abcdefghijklmnop"),
        ("KIRO_API_KEY", "ksk_from_the_worker_env"),
        ("KIRO_LEASE_TABLE", "t"),
        ("MY_AGENT_SETTING", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let mut cfg = Config::defaults();
    cfg.agent_cmd = format!("sh -c 'env > \"{}\"'", dump.display());
    cfg.agent_env_pass = Some("MY_AGENT_SETTING".into());
    cfg.kiro_api_key = Some(Secret::new("ksk_the_agents_own_key"));
    let agent = Agent::from_config(&cfg, parent).unwrap();
    let spec = SpecPath::parse("subtract").unwrap();
    agent
        .run(
            "the prompt",
            dir.path(),
            &spec,
            Duration::from_secs(20),
            &dir.path().join("agent.log"),
        )
        .await
        .unwrap();
    let text = std::fs::read_to_string(&dump).unwrap();
    let mut names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect();
    names.sort();
    names.retain(|n| !matches!(*n, "PWD" | "SHLVL" | "OLDPWD" | "_"));
    assert_eq!(
        names,
        [
            "HOME",
            "KIRO_API_KEY",
            "KIRO_SPEC_PATH",
            "LC_ALL",
            "MY_AGENT_SETTING",
            "NO_COLOR",
            "PATH",
            "XDG_CACHE_HOME",
            "XDG_CONFIG_HOME",
            "XDG_DATA_HOME",
            "XDG_STATE_HOME",
            "https_proxy",
        ]
    );
    assert!(text.contains("KIRO_API_KEY=ksk_the_agents_own_key\n"));
    assert!(!text.contains("HOME=/root\n") && !text.contains("wJalr"));
    let e = Agent::from_config(
        &Config {
            agent_env_pass: Some("AWS_SECRET_ACCESS_KEY".into()),
            ..Config::defaults()
        },
        [],
    )
    .unwrap_err();
    assert!(
        e.reason
            .starts_with("KIRO_AGENT_ENV_PASS names AWS_SECRET_ACCESS_KEY")
    );
}

/// A prompt over one argument's limit (a 200 KiB spec: E2BIG before) still starts the
/// agent: it gets a short prompt naming a file in its fresh HOME that holds the whole one.
#[tokio::test]
async fn a_prompt_too_long_for_one_argument_goes_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("arg.txt");
    let command = AgentCommand::parse(
        &format!("sh -c 'printf %s \"$0\" > \"{}\"'", got.display()),
        flags(),
    )
    .unwrap();
    let agent = Agent::new(command, None, None).unwrap();
    let spec = SpecPath::parse("subtract").unwrap();
    let log = dir.path().join("agent.log");
    for (size, inline) in [(1000, true), (PROMPT_ARG_MAX, true), (200 * 1024, false)] {
        let prompt: String = "spec text ✓\n".chars().cycle().take(size).collect();
        let prompt = &prompt[..prompt.len().min(size)];
        agent
            .run(prompt, dir.path(), &spec, Duration::from_secs(20), &log)
            .await
            .unwrap_or_else(|f| panic!("{size}: {}", f.reason));
        let arg = std::fs::read_to_string(&got).unwrap();
        if inline {
            assert_eq!(arg, prompt, "{size}");
            continue;
        }
        assert!(arg.len() < 1024, "{size}: {} bytes", arg.len());
        let file = agent.home().join(PROMPT_FILE);
        assert!(arg.contains(&file.display().to_string()), "{arg}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), prompt);
    }
}
