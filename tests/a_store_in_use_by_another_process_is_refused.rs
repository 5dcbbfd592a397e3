//! Two processes must never run the same store (both would recover the same commands):
//! the second one's open fails at once with "locked". `harness = false`: `main` is the
//! test; run with the env var below it is the child that holds the store.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use a3s_lane::{LaneError, LocalStorage};

const HOLD_DIR: &str = "A3S_LANE_HOLD_STORE_DIR";

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match std::env::var_os(HOLD_DIR) {
        Some(dir) => runtime.block_on(async {
            let store = LocalStorage::new(&dir).await.unwrap();
            println!("READY");
            std::io::stdout().flush().unwrap();
            // Hold the store until the parent closes our stdin.
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            store.close().await.unwrap();
        }),
        None => runtime.block_on(parent()),
    }
}

async fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(HOLD_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().map(Result::unwrap).as_deref(), Some("READY"));

    match LocalStorage::new(dir.path()).await {
        Err(LaneError::Storage(message)) => {
            assert!(message.contains("locked by another process"), "{message}");
        }
        other => panic!("a store held by another process must not open: {other:?}"),
    }

    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let store = LocalStorage::new(dir.path())
        .await
        .expect("opens once released");
    assert!(store.load_commands().await.unwrap().is_empty());
    println!("a store in use by another process is refused: ok");
}
