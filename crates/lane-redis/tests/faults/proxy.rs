//! A TCP proxy between the library and Redis that injects network faults: cut every
//! connection, drop replies after the requests reached Redis, add latency, freeze.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Carry both ways.
    Pass,
    /// Carry requests to Redis, throw its replies away: Redis acts, the client never hears.
    DropReplies,
    /// Carry nothing either way (bytes wait in the sockets), as a stalled network.
    Freeze,
    /// Carry both ways, each chunk after this delay.
    Latency(Duration),
}

/// A running proxy to one Redis address.
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    pumps: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Pass);
        let pumps: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let mode = mode.clone();
            let pumps = pumps.clone();
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue; // the client sees its connection close
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let mut pumps = pumps.lock();
                    pumps.retain(|pump| !pump.is_finished());
                    pumps.push(tokio::spawn(pump(
                        client_read,
                        server_write,
                        mode.subscribe(),
                        false,
                    )));
                    pumps.push(tokio::spawn(pump(
                        server_read,
                        client_write,
                        mode.subscribe(),
                        true,
                    )));
                }
            }
        });
        Self {
            addr,
            mode,
            pumps,
            accept,
        }
    }

    /// The URL clients connect to.
    pub(crate) fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Changes what the proxy does from now on.
    pub(crate) fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Closes every connection it carries now (new ones are accepted).
    pub(crate) fn cut(&self) {
        for pump in self.pumps.lock().drain(..) {
            pump.abort();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Copies one direction; `replies` tells whether it carries Redis's replies.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    replies: bool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // A frozen proxy reads nothing: bytes stay in the kernel's buffers.
        while *mode.borrow_and_update() == Mode::Freeze {
            if mode.changed().await.is_err() {
                return;
            }
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = mode.changed() => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        match current {
            Mode::DropReplies if replies => continue,
            Mode::Latency(delay) => tokio::time::sleep(delay).await,
            _ => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
