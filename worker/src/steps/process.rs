//! Running a child process with a hard wall-clock limit and captured output.
//!
//! Invariant: the child runs in its own process group, and when it exits or its time is
//! up the whole group is killed (SIGKILL), so nothing it started outlives the step or
//! keeps the output pipes open. Its stdout and stderr go, line by line and with ANSI
//! escape codes stripped, every given secret value masked and every credential-looking
//! value redacted ([`kiro_protocol::redact::LineRedactor`], PEM blocks included), to a
//! log file; the last lines are kept (as redacted) for the report.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
}

/// A finished child.
#[derive(Debug, Clone)]
pub struct Captured {
    pub exit: Exit,
    /// The last lines of output (stdout and stderr interleaved as they arrived).
    pub tail: Vec<String>,
    /// The child's process id (also its process group id).
    pub pid: Option<u32>,
    /// How many lines of output there were in all.
    pub lines: usize,
}

/// How long to wait for the output pipes after the group was killed.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Replace every secret value (of at least 4 characters) in `line` by `***`.
pub fn mask(line: String, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(line, |l, s| l.replace(s.as_str(), "***"))
}

/// Run `cmd` (stdin closed) for at most `limit`, logging its output to `log` with every
/// value of `secrets` masked.
pub async fn run_captured(
    mut cmd: Command,
    limit: Duration,
    log: &Path,
    tail_lines: usize,
    secrets: &[String],
) -> std::io::Result<Captured> {
    let secrets = secrets.to_vec();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = log.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut file = tokio::fs::File::create(log).await?;
    let mut child = cmd.spawn()?;
    let pid = child.id();
    // Abandoned (the step's future dropped, as when the worker is stopped by SIGTERM):
    // the whole group goes, not only the direct child `kill_on_drop` reaches.
    let group = GroupGuard(pid);
    let (tx, mut rx) = mpsc::channel::<String>(256);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(forward_lines(out, tx.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(forward_lines(err, tx.clone())));
    }
    drop(tx);
    let collector = tokio::spawn(async move {
        let mut tail = VecDeque::with_capacity(tail_lines + 1);
        let mut io_error = None;
        let mut lines = 0usize;
        let mut redactor = kiro_protocol::redact::LineRedactor::new();
        while let Some(line) = rx.recv().await {
            lines += 1;
            let line = redactor.line(&mask(line, &secrets));
            if io_error.is_none() {
                let mut bytes = line.clone().into_bytes();
                bytes.push(b'\n');
                if let Err(e) = file.write_all(&bytes).await {
                    io_error = Some(e);
                }
            }
            tail.push_back(line);
            if tail.len() > tail_lines {
                tail.pop_front();
            }
        }
        let _ = file.flush().await;
        (Vec::from(tail), lines, io_error)
    });

    let exit = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => {
            let status = status?;
            match (status.code(), status.signal()) {
                (Some(c), _) => Exit::Code(c),
                (None, Some(s)) => Exit::Signal(s),
                (None, None) => Exit::Signal(0),
            }
        }
        Err(_) => Exit::TimedOut,
    };
    // Whatever happened, nothing of the group may survive the step.
    drop(group);
    if exit == Exit::TimedOut {
        let _ = child.wait().await;
    }
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout(DRAIN_LIMIT, r).await.is_err() {
            abort.abort();
        }
    }
    let (tail, lines, io_error) = collector
        .await
        .map_err(|e| std::io::Error::other(format!("log collector failed: {e}")))?;
    if let Some(e) = io_error {
        return Err(e);
    }
    Ok(Captured {
        exit,
        tail,
        pid,
        lines,
    })
}

/// The longest output line kept, in bytes: a longer one is cut into several (a child
/// that prints gigabytes without a newline must not fill the worker's memory).
pub const MAX_LINE_BYTES: usize = 16 * 1024;

async fn forward_lines<R: AsyncRead + Unpin>(r: R, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(r);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let (done, used, eof) = match reader.fill_buf().await {
            Err(_) => break,
            Ok([]) => (true, 0, true),
            Ok(chunk) => {
                let room = MAX_LINE_BYTES - buf.len();
                match chunk.iter().take(room).position(|b| *b == b'\n') {
                    Some(i) => {
                        buf.extend_from_slice(&chunk[..i]);
                        (true, i + 1, false)
                    }
                    None => {
                        let n = chunk.len().min(room);
                        buf.extend_from_slice(&chunk[..n]);
                        (buf.len() >= MAX_LINE_BYTES, n, false)
                    }
                }
            }
        };
        reader.consume(used);
        if done && !(eof && buf.is_empty()) {
            let text = String::from_utf8_lossy(&buf);
            let line = strip_ansi(text.trim_end_matches(['\n', '\r']));
            buf.clear();
            if tx.send(line).await.is_err() {
                break;
            }
        }
        if eof {
            break;
        }
    }
}

/// SIGKILLs the process group of a step's command when dropped.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// SIGKILL the process group `pid` (ignoring "no such process").
pub fn kill_group(pid: Option<u32>) {
    let pgid = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
}

/// Remove ANSI escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL|ESC \`,
/// `ESC <intermediates> final` and two-byte `ESC x`) and other control characters except tab.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    for n in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&n) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    while let Some(n) = chars.next() {
                        if n == '\u{7}' {
                            break;
                        }
                        if n == '\u{1b}' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                // `ESC ( B` and friends: intermediates, then one final byte.
                Some(i) if ('\u{20}'..='\u{2f}').contains(&i) => {
                    for n in chars.by_ref() {
                        if !('\u{20}'..='\u{2f}').contains(&n) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ansi_sequences() {
        assert_eq!(
            strip_ansi("\u{1b}[1;31mred\u{1b}[0m plain \u{1b}]0;title\u{7}x\u{1b}(B\r"),
            "red plain x"
        );
        assert_eq!(strip_ansi("a\tb"), "a\tb");
    }

    #[tokio::test]
    async fn captures_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("printf '\\033[32mgreen\\033[0m\\n'; echo err >&2; exit 3");
        let c = run_captured(cmd, Duration::from_secs(20), &log, 10, &[])
            .await
            .unwrap();
        assert_eq!(c.exit, Exit::Code(3));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("green\n") && text.contains("err\n"), "{text}");
        assert!(!text.contains('\u{1b}'));

        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("sleep 30 & sleep 30");
        let c = run_captured(cmd, Duration::from_millis(300), &log, 10, &[])
            .await
            .unwrap();
        assert_eq!(c.exit, Exit::TimedOut);

        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo key=ksk_topsecret; echo ksk_topsecret >&2");
        let c = run_captured(
            cmd,
            Duration::from_secs(20),
            &log,
            10,
            &["ksk_topsecret".into()],
        )
        .await
        .unwrap();
        let mut tail = c.tail.clone();
        tail.sort();
        assert_eq!(tail, ["***", "key=***"]);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !text.contains("topsecret") && text.contains("key=***"),
            "{text}"
        );
    }

    /// A child that prints megabytes without a newline: its output is cut into lines
    /// of at most MAX_LINE_BYTES, nothing is lost, memory stays bounded.
    #[tokio::test]
    async fn endless_lines_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("head -c 1000000 /dev/zero | tr '\\0' a; echo; echo end");
        let c = run_captured(cmd, Duration::from_secs(20), &log, 3, &[])
            .await
            .unwrap();
        assert_eq!(c.exit, Exit::Code(0));
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE_BYTES));
        assert_eq!(lines.iter().map(|l| l.len()).sum::<usize>(), 1_000_000 + 3);
        assert_eq!(lines.last(), Some(&"end"));
    }
}
