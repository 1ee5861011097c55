//! A real `git daemon` serving a folder over git:// on 127.0.0.1 (push enabled), killed on
//! drop: the network transport libgit2 fetches shallow over. Shared by the checkout tests
//! and the checkout benchmark (`worker/benches/checkout.rs`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `git daemon`.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    /// Serve every repository under `base` (read and push) until dropped.
    pub fn serve(base: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = base.canonicalize().unwrap();
        let child = Command::new("git")
            .args([
                "daemon",
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(&base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "git daemon did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, addr }
    }

    /// The git:// URL of `repo` (a path under the served folder).
    pub fn url(&self, repo: &str) -> String {
        format!("git://{}/{repo}", self.addr)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
