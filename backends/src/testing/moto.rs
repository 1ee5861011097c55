//! One moto server (the AWS API emulator) per test binary, started on first use and
//! stopped at exit. Used by this crate's tests and the end-to-end tests; it panics
//! with instructions when moto is missing, because a test must fail, never skip.
//!
//! The server binary is `KIRO_MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server`
//! (what `scripts/test-all.sh` installs from `scripts/requirements-test.txt`); when neither
//! exists the tests FAIL with a message saying how to get it — they never skip.
//!
//! Clean-up: moto runs under `sh -c 'moto_server … & read _; kill $!'` with its stdin a
//! pipe held by this process. When the test binary exits for any reason (success, panic,
//! SIGKILL), the pipe closes, `read` returns and the shell kills moto. Tests share the
//! server and run in parallel, so each test creates its own uniquely named queues and
//! tables instead of resetting moto between tests.

use crate::aws::settings::{AwsSettings, sdk_config};
use aws_config::SdkConfig;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Moto {
    pub endpoint: String,
    _child: Mutex<Child>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();
static SEQ: AtomicU64 = AtomicU64::new(0);

fn server_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KIRO_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join(".venv/bin/moto_server")
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn start() -> Moto {
    let path = server_path();
    assert!(
        path.exists(),
        "moto_server not found at {} — run scripts/test-all.sh, or \
         `python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt`, \
         or set KIRO_MOTO_SERVER",
        path.display()
    );
    let port = free_port();
    let script =
        format!("\"$0\" -H 127.0.0.1 -p {port} >/dev/null 2>&1 & pid=$!; read _ignored; kill $pid");
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            let _ = s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read(&mut buf).is_ok_and(|n| n > 0) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        _child: Mutex::new(child),
    }
}

/// The shared server.
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(start)
}

/// A name no other test of this binary uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn settings() -> AwsSettings {
    AwsSettings::new("us-east-1").with_endpoint(moto().endpoint.clone())
}

pub async fn config() -> SdkConfig {
    sdk_config(&settings()).await
}

/// Names of the resources [`provision`] created.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub queue_url: String,
    pub dlq_url: String,
    pub table: String,
}

/// Create a fresh FIFO queue with its FIFO dead-letter queue and a lease table on the
/// shared moto server, named after `prefix` (unique per call).
pub async fn provision(prefix: &str) -> Provisioned {
    let sdk = config().await;
    let name = unique(prefix);
    let (queue_url, dlq_url) =
        crate::aws::sqs::create_queues(&aws_sdk_sqs::Client::new(&sdk), &name)
            .await
            .expect("create queues on moto");
    let table = format!("{name}-leases");
    crate::aws::dynamo::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .expect("create the lease table on moto");
    Provisioned {
        queue_url,
        dlq_url,
        table,
    }
}
