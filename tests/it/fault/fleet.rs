//! The fault suite's consumers: a fixed number of slots, each running one real
//! `kiro-consumer run` process at a time on the shared state dir. A slot's process is
//! SIGKILLed (a crash) or SIGTERMed (a deploy) and at once replaced by a new one.
//!
//! Invariant: every process this fleet started is reaped; on drop (a failed test) the
//! ones still running are killed, so nothing of a run outlives the test.

use kiro_local_build::process::{SIGKILL, SIGTERM, signal};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Running {
    /// `c<slot>n<incarnation>`: the consumer's HOSTNAME, so its owner id starts with it.
    name: String,
    child: Child,
}

/// The consumers of one run.
#[derive(Debug)]
pub struct Fleet {
    bin: PathBuf,
    env: Vec<(String, String)>,
    logs: PathBuf,
    slots: Vec<Option<Running>>,
    incarnations: usize,
    pub kills: usize,
    /// Of the kills, those that landed in the middle of a drain.
    pub drain_kills: usize,
    pub terms: usize,
    /// Exit statuses of SIGTERMed consumers that did not exit 0, with their name.
    pub bad_exits: Vec<String>,
}

impl Fleet {
    /// Start `n` consumers.
    pub fn start(bin: &Path, env: &[(String, String)], logs: &Path, n: usize) -> Fleet {
        std::fs::create_dir_all(logs).unwrap();
        let mut fleet = Fleet {
            bin: bin.to_path_buf(),
            env: env.to_vec(),
            logs: logs.to_path_buf(),
            slots: (0..n).map(|_| None).collect(),
            incarnations: 0,
            kills: 0,
            drain_kills: 0,
            terms: 0,
            bad_exits: Vec::new(),
        };
        for slot in 0..n {
            fleet.spawn(slot);
        }
        fleet
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The owner-id prefix of the consumer running in `slot` (`c<slot>n<k>-`).
    pub fn owner_prefix(&self, slot: usize) -> String {
        let r = self.slots[slot].as_ref().expect("slot is running");
        format!("{}-", r.name)
    }

    fn spawn(&mut self, slot: usize) {
        let name = format!("c{slot}n{}", self.incarnations);
        self.incarnations += 1;
        let log = std::fs::File::create(self.logs.join(format!("{name}.log"))).unwrap();
        let child = Command::new(self.bin.join("kiro-consumer"))
            .arg("run")
            // The support's quick-recovery settings, and at most 3 attempts per item.
            .args(crate::support::QUICK_RECOVERY)
            .args(["--max-attempts", "3"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("HOSTNAME", &name)
            .env("KIRO_HEALTH_FILE", self.logs.join(format!("{name}.health")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.slots[slot] = Some(Running { name, child });
    }

    /// SIGKILL the consumer in `slot` (a crash), reap it, and start its replacement.
    pub fn kill_and_replace(&mut self, slot: usize) {
        let mut r = self.slots[slot].take().expect("slot is running");
        let _ = r.child.kill();
        let _ = r.child.wait();
        self.kills += 1;
        self.spawn(slot);
    }

    /// SIGTERM the consumer in `slot`, then SIGKILL it `after` later whether or not it
    /// finished handing its jobs off (a crash in the middle of a drain), reap it, and
    /// start its replacement. Counts as a SIGKILL.
    pub async fn term_then_kill_and_replace(&mut self, slot: usize, after: Duration) {
        let mut r = self.slots[slot].take().expect("slot is running");
        let _ = signal(i32::try_from(r.child.id()).unwrap(), SIGTERM);
        tokio::time::sleep(after).await;
        let _ = r.child.kill();
        let _ = r.child.wait();
        self.kills += 1;
        self.drain_kills += 1;
        self.spawn(slot);
    }

    /// SIGTERM the consumer in `slot` (a deploy), wait up to `limit` for it to hand its
    /// jobs off and exit, then start its replacement. One that does not exit in time is
    /// SIGKILLed and noted in `bad_exits`, as is one that exits with an error.
    pub async fn term_and_replace(&mut self, slot: usize, limit: Duration) {
        let r = self.slots[slot].take().expect("slot is running");
        self.terms += 1;
        if let Some(bad) = stop(r, limit).await {
            self.bad_exits.push(bad);
        }
        self.spawn(slot);
    }

    /// SIGTERM every consumer and wait for each (the end of the run).
    pub async fn stop_all(&mut self, limit: Duration) {
        for slot in 0..self.slots.len() {
            if let Some(r) = self.slots[slot].take()
                && let Some(bad) = stop(r, limit).await
            {
                self.bad_exits.push(bad);
            }
        }
    }

    /// Every consumer log of the run, by name.
    pub fn logs(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = std::fs::read_dir(&self.logs)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(e.path()).unwrap_or_default())
            })
            .collect();
        out.sort();
        out
    }
}

/// SIGTERM `r`, wait up to `limit`; a description when it did not exit 0 in time.
async fn stop(mut r: Running, limit: Duration) -> Option<String> {
    let pid = i32::try_from(r.child.id()).unwrap();
    let _ = signal(pid, SIGTERM);
    let deadline = Instant::now() + limit;
    let status: Option<ExitStatus> = loop {
        if let Some(s) = r.child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    match status {
        Some(s) if s.success() => None,
        Some(s) => Some(format!("{} exited with {s} after SIGTERM", r.name)),
        None => {
            let _ = signal(pid, SIGKILL);
            let _ = r.child.wait();
            Some(format!(
                "{} did not exit within {limit:?} of SIGTERM",
                r.name
            ))
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for r in self.slots.iter_mut().flatten() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}
