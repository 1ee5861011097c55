//! A TCP forwarder on 127.0.0.1: its address is known before the emulator it forwards to
//! has started, so the build image's environment (fixed when the emulator starts) can name
//! the AWS endpoint.
//!
//! Invariant: bytes pass unchanged in both directions; the emulator records calls by their
//! `Authorization` header, never by connection, so the forwarder is invisible to it.

use tokio::net::{TcpListener, TcpStream};

#[derive(Debug)]
pub struct Forwarder {
    listener: TcpListener,
    pub url: String,
}

impl Forwarder {
    pub async fn bind() -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Forwarder { listener, url }
    }

    /// Forward every connection to `target` (`http://127.0.0.1:PORT`) until the runtime ends.
    pub fn start(self, target: &str) -> tokio::task::JoinHandle<()> {
        let target = target.trim_start_matches("http://").to_owned();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = self.listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        })
    }
}
