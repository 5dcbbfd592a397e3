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
    /// Extra arguments (a replica's `--replicaof`).
    extra: Vec<String>,
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
        Self::start_with(test, Vec::new())
    }

    /// A replica of `master`.
    pub(crate) fn replica_of(test: &str, master: SocketAddr) -> Self {
        Self::start_with(
            test,
            vec![
                "--replicaof".into(),
                master.ip().to_string(),
                master.port().to_string(),
            ],
        )
    }

    fn start_with(test: &str, extra: Vec<String>) -> Self {
        let port = free_port();
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
            extra,
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
            .args(&self.extra)
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis Sentinel watching one master as `mymaster` (quorum 1), declaring it down
/// after 500 ms.
pub(crate) struct SentinelServer {
    pub(crate) addr: SocketAddr,
    dir: PathBuf,
    child: Child,
}

impl SentinelServer {
    pub(crate) fn start(test: &str, master: SocketAddr) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "a3s-lane-sentinel-{test}-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster {} {} 1\n\
                 sentinel down-after-milliseconds mymaster 500\n\
                 sentinel failover-timeout mymaster 3000\n",
                dir.display(),
                master.ip(),
                master.port()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server --sentinel");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sentinel did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { addr, dir, child }
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of the test's own: three masters with a replica each, AOF on, a node
/// timeout of one second so a replica takes over quickly.
pub(crate) struct ClusterServers {
    pub(crate) nodes: Vec<RedisServer>,
}

impl ClusterServers {
    pub(crate) fn start(test: &str) -> Self {
        let mut nodes = Vec::new();
        for index in 0..6 {
            // The cluster bus listens on port + 10000: both must be free.
            let port = loop {
                let port = free_port();
                if port < 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
                    break port;
                }
            };
            let dir = std::env::temp_dir().join(format!(
                "a3s-lane-cluster-{test}-{}-{port}-{index}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut node = RedisServer {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                dir,
                child: None,
                extra: vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-node-timeout".into(),
                    "1000".into(),
                    // A replica takes over however long ago it last heard its master.
                    "--cluster-replica-validity-factor".into(),
                    "0".into(),
                ],
            };
            node.spawn();
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes.iter().map(|node| node.addr.to_string()).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes };
        let started = Instant::now();
        while !cluster
            .nodes
            .iter()
            .all(|node| cli(node.addr, &["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the test cluster did not reach cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Replicas in sync with their masters, so a takeover has the data.
        while !cluster.nodes.iter().all(|node| {
            let info = cli(node.addr, &["info", "replication"]);
            info.contains("role:master") || info.contains("master_link_status:up")
        }) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the test cluster's replicas did not sync"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://{}", node.addr))
            .collect()
    }

    /// What the live nodes say about the cluster, for failure messages.
    pub(crate) fn describe(&self) -> String {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| cli(node.addr, &["cluster", "nodes"]))
            .next()
            .unwrap_or_default()
    }

    /// The index of the master that serves `key` now, if one does.
    pub(crate) fn master_of(&self, key: &str) -> Option<usize> {
        let slot = cli(self.nodes[0].addr, &["cluster", "keyslot", key]);
        let slot: u16 = slot.trim().parse().unwrap();
        self.nodes.iter().position(|node| {
            let nodes = cli(node.addr, &["cluster", "nodes"]);
            nodes.lines().any(|line| {
                line.contains("myself") && line.contains("master") && {
                    line.split_whitespace().skip(8).any(|range| {
                        let mut bounds = range.split('-');
                        let start: u16 = bounds.next().and_then(|s| s.parse().ok()).unwrap_or(1);
                        let end: u16 = bounds.next().and_then(|s| s.parse().ok()).unwrap_or(start);
                        (start..=end).contains(&slot)
                    })
                }
            })
        })
    }
}

fn cli(addr: SocketAddr, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .output()
        .expect("running redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
