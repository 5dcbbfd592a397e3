//! A throwaway `redis-server` of the test's own, with its data in an append-only file
//! fsynced at every write, that the test can kill, stop, freeze and start again.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server process on a free loopback port, AOF on (`appendfsync always`).
pub(crate) struct RedisServer {
    pub(crate) addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

/// How a server goes down.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    /// SIGKILL: no shutdown, what was fsynced survives.
    Kill,
    /// SIGTERM: a clean shutdown.
    Terminate,
}

impl RedisServer {
    /// Starts a server and waits until it answers.
    pub(crate) fn start(test: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "a3s-lane-faults-{test}-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.addr.port().to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start redis-server ({error}): the fault-injection tests start \
                     their own servers; install it (Debian: apt-get install redis-server) or \
                     run `bash scripts/test.sh`, which installs it"
                )
            });
        self.child = Some(child);
        self.wait_until_answering();
    }

    fn wait_until_answering(&self) {
        let started = Instant::now();
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(self.addr) {
                use std::io::{Read, Write};
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut reply = [0u8; 64];
                // PING answers -LOADING while the AOF is read back.
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream
                        .read(&mut reply)
                        .is_ok_and(|n| reply[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "redis-server on {} did not answer within 20 s",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Takes the server down.
    pub(crate) fn stop(&mut self, how: Stop) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        match how {
            Stop::Kill => {
                let _ = child.kill();
            }
            Stop::Terminate => signal(child.id(), "TERM"),
        }
        let _ = child.wait();
    }

    /// Starts it again on the same port with the same data.
    pub(crate) fn restart(&mut self) {
        self.spawn();
    }

    /// SIGSTOP: the process stops answering, connections stay open.
    pub(crate) fn freeze(&self) {
        signal(self.child.as_ref().expect("running").id(), "STOP");
    }

    /// SIGCONT after [`RedisServer::freeze`].
    pub(crate) fn thaw(&self) {
        signal(self.child.as_ref().expect("running").id(), "CONT");
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid} failed");
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
        self.stop(Stop::Kill);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
