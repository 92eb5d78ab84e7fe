//! Shared helpers: a simulator on a free loopback port, clients, payloads and polling.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use kapsync::kapture::{Client, Target, Token};
use kapsync::simulator::{SimConfig, SimHandle, Simulator};

/// Starts a simulator on 127.0.0.1 with a port the OS picks.
pub async fn start_sim(config: SimConfig) -> SimHandle {
    Simulator::start(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("the simulator starts on a free port")
}

/// A client for `base_url` with `token` and a request timeout.
pub fn client_with(base_url: &str, token: &str, timeout: Duration) -> Client {
    let target = Target::resolve(None, Some(base_url)).expect("a loopback base URL");
    Client::new(target, Token::new(token).expect("a valid token"), timeout).expect("a client")
}

/// A client for `base_url` with a test token and a 10 s timeout.
pub fn client(base_url: &str) -> Client {
    client_with(base_url, "test-token", Duration::from_secs(10))
}

/// One update object's JSON text.
pub fn update(ticket_id: &str, sub_status: &str, comment: &str) -> String {
    serde_json::json!({
        "ticket_id": ticket_id,
        "sub_status": sub_status,
        "comment": comment,
    })
    .to_string()
}

/// A loopback address nothing listens on (bound, then released).
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Polls `check` until it returns true or `deadline` passes.
pub async fn eventually(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}
