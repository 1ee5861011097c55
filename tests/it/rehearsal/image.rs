//! The emulated images: a directory put first on `PATH` that holds what the build image and
//! the consumer/producer image would — `kiro-worker` (the workspace's debug build) and a
//! **stand-in `kiro-cli`** — plus git, node, npm and the shell utilities from the host.
//!
//! The stand-in `kiro-cli` is NOT Kiro: it is a shell script that answers `--version` with
//! the version the stack pins (`KIRO_CLI_VERSION`, so the buildspec's version check runs),
//! `whoami` only when `KIRO_API_KEY` holds the key stored in the stack's secret (so the
//! secret must really reach the build), and `chat … "<prompt>"` by running the quick
//! start's scripted agent (examples/quickstart/agent/scripted-agent.mjs) on the prompt.
//!
//! Invariant: the image directory holds only files this module wrote; host tools are
//! reached through `PATH` entries of the host's own directories, never copied.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// An emulated image on disk.
#[derive(Debug)]
pub struct Image {
    pub bin: PathBuf,
    /// `PATH` inside the image: `bin` first, then the host directories of git, node and sh.
    pub path: String,
}

fn host_dir_of(tool: &str) -> PathBuf {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!p.is_empty(), "{tool} must be on the host's PATH");
    Path::new(&p).parent().unwrap().to_path_buf()
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The stand-in kiro-cli's script.
pub fn stand_in_kiro_cli(version: &str, api_key: &str, agent: &Path) -> String {
    format!(
        r#"#!/bin/sh
# STAND-IN for kiro-cli in the deployment rehearsal's emulated build image. NOT Kiro:
# it answers --version and whoami, and runs the quick start's SCRIPTED agent for chat.
case "$1" in
  --version) echo "kiro-cli {version}"; exit 0 ;;
  whoami)
    if [ "${{KIRO_API_KEY:-}}" != '{api_key}' ]; then
      echo "stand-in kiro-cli: not logged in (KIRO_API_KEY is not the stack's key)" >&2
      exit 1
    fi
    echo "rehearsal@example.invalid (stand-in kiro-cli)"; exit 0 ;;
  chat)
    prompt=""
    for a in "$@"; do prompt=$a; done
    exec node '{agent}' "$prompt" ;;
  *) echo "stand-in kiro-cli: unsupported command $1" >&2; exit 2 ;;
esac
"#,
        agent = agent.display()
    )
}

impl Image {
    /// An image under `dir` with `kiro-worker` from `bin_dir` and the stand-in kiro-cli
    /// answering `cli_version` and accepting `api_key`.
    pub fn build(dir: &Path, bin_dir: &Path, cli_version: &str, api_key: &str) -> Image {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(bin_dir.join("kiro-worker"), bin.join("kiro-worker")).unwrap();
        let agent = crate::support::example().join("agent/scripted-agent.mjs");
        write_exec(
            &bin.join("kiro-cli"),
            &stand_in_kiro_cli(cli_version, api_key, &agent),
        );
        let mut dirs: Vec<String> = vec![bin.display().to_string()];
        for tool in ["git", "node", "npm", "sh"] {
            let d = host_dir_of(tool).display().to_string();
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        for d in ["/usr/bin", "/bin"] {
            if !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_owned());
            }
        }
        Image {
            bin,
            path: dirs.join(":"),
        }
    }
}

#[test]
fn the_stand_in_kiro_cli_checks_the_key_and_runs_the_scripted_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let image = Image::build(
        tmp.path(),
        &crate::support::repo_root().join("target/debug"),
        "2.8.0",
        "ksk_good",
    );
    let cli = image.bin.join("kiro-cli");
    let run = |args: &[&str], key: &str| {
        std::process::Command::new(&cli)
            .args(args)
            .env("PATH", &image.path)
            .env("KIRO_API_KEY", key)
            .current_dir(tmp.path())
            .output()
            .unwrap()
    };
    let v = run(&["--version"], "");
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "kiro-cli 2.8.0");
    assert!(run(&["whoami"], "ksk_good").status.success());
    assert!(!run(&["whoami"], "ksk_bad").status.success());
    // chat runs the scripted agent on the last argument (it fails here: no spec path).
    let chat = run(
        &["chat", "--no-interactive", "--trust-all-tools", "do it"],
        "ksk_good",
    );
    assert!(
        String::from_utf8_lossy(&chat.stderr).contains("scripted stand-in agent"),
        "{}",
        String::from_utf8_lossy(&chat.stderr)
    );
}

/// The `ENV` of the final stage of the consumer/producer image (`Dockerfile.consumer`):
/// ECS starts the containers with the image's environment under the task definition's.
pub fn task_image_env() -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(crate::support::repo_root().join("Dockerfile.consumer"))
        .expect("Dockerfile.consumer");
    parse_dockerfile_env(&text)
}

/// `ENV` instructions after the last `FROM` (`ENV K=V …` with line continuations, or
/// the legacy `ENV K V`).
pub fn parse_dockerfile_env(text: &str) -> std::collections::BTreeMap<String, String> {
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined.lines().collect();
    let last_stage = lines
        .iter()
        .rposition(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .unwrap_or(0);
    let mut env = std::collections::BTreeMap::new();
    for line in lines.iter().skip(last_stage) {
        let line = line.trim();
        let Some(rest) = line
            .strip_prefix("ENV ")
            .or_else(|| line.strip_prefix("env "))
        else {
            continue;
        };
        let rest = rest.trim();
        if !rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .contains('=')
        {
            if let Some((k, v)) = rest.split_once(char::is_whitespace) {
                env.insert(k.to_owned(), v.trim().to_owned());
            }
            continue;
        }
        for pair in rest.split_whitespace() {
            if let Some((k, v)) = pair.split_once('=') {
                env.insert(k.to_owned(), v.trim_matches('"').to_owned());
            }
        }
    }
    env
}

#[test]
fn the_image_env_is_read_from_the_last_stage() {
    let env = parse_dockerfile_env(
        "FROM a AS build\nENV X=1\nFROM b\nENV KIRO_LOG_FORMAT=json \\\n    KIRO_HEALTH_FILE=/tmp/h\nENV OLD style value\n",
    );
    assert_eq!(env.get("X"), None);
    assert_eq!(env.get("KIRO_LOG_FORMAT").map(String::as_str), Some("json"));
    assert_eq!(
        env.get("KIRO_HEALTH_FILE").map(String::as_str),
        Some("/tmp/h")
    );
    assert_eq!(env.get("OLD").map(String::as_str), Some("style value"));
    assert!(task_image_env().contains_key("KIRO_HEALTH_FILE"));
}
