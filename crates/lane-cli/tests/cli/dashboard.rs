//! `a3s-lane dashboard`: lane-dashboard's server over a Redis queue.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use a3s_lane::{LaneConfig, RedisQueue, RedisQueueConfig};

use crate::redis::{Cleanup, redis_url, unique_prefix};

/// The server process; killed when dropped, whatever the test's outcome.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request; the status code and the body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connecting to the dashboard");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_serves_a_redis_queue_and_its_actions_need_the_token() {
    let prefix = unique_prefix("dashboard");
    let queue = RedisQueue::connect(
        RedisQueueConfig::new(redis_url())
            .with_key_prefix(&prefix)
            .with_lane("mail", LaneConfig::new(1, 2), 1),
    )
    .await
    .expect("connecting to the test Redis");
    let _cleanup = Cleanup(queue.clone());
    let token = "cli-test-token";
    let mut child = Command::new(env!("CARGO_BIN_EXE_a3s-lane"))
        .args(["--redis", &redis_url(), "--prefix", &prefix])
        .args(["dashboard", "--addr", "127.0.0.1:0"])
        .env("A3S_LANE_DASHBOARD_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the a3s-lane binary");
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("a3s-lane dashboard: http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("the address line: {line:?}"))
        .to_owned();
    assert!(!line.contains(token), "the configured token is not printed");

    let (status, body) = http(&addr, "GET", "/api/lanes", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"mail\""), "{body}");
    let (status, _) = http(&addr, "POST", "/api/lanes/mail/pause", None);
    assert_eq!(status, 401, "an action without the token is refused");
    assert!(!queue.stats().await.unwrap().queue.lanes["mail"].paused);
    let (status, body) = http(&addr, "POST", "/api/lanes/mail/pause", Some(token));
    assert_eq!(status, 200, "{body}");
    assert!(queue.stats().await.unwrap().queue.lanes["mail"].paused);
    drop(server);
}
