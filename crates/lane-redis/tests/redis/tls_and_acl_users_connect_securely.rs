//! Encrypted and authenticated connections: a throwaway `redis-server` of the test's own
//! that speaks only TLS, asks clients for a certificate, and knows one ACL user. The
//! certificates are made by the test with `openssl` (fails saying so without it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use a3s_lane::{
    HandlerRegistry, LaneConfig, LaneError, RedisQueue, RedisQueueConfig, RedisTls, RedisWorker,
    RedisWorkerConfig, handler_fn,
};
use serde_json::json;

const PASSWORD: &str = "s3cret-Pa55";

/// A TLS-only server with ACL user `app` (and the default user off), plus the PEM files.
struct TlsServer {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl TlsServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("a3s-lane-tls-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        make_certificates(&dir);
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--tls-cert-file", &file("server.crt")])
            .args(["--tls-key-file", &file("server.key")])
            .args(["--tls-ca-cert-file", &file("ca.crt")])
            .args(["--tls-auth-clients", "yes", "--save", ""])
            .args([
                "--user",
                "app",
                "on",
                &format!(">{PASSWORD}"),
                "~*",
                "&*",
                "+@all",
            ])
            .args(["--user", "default", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start redis-server ({error}): install it (Debian: apt-get install \
                     redis-server) or run `bash scripts/test.sh`, which installs it"
                )
            });
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "TLS redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, dir, child }
    }

    fn url(&self, credentials: &str) -> String {
        format!("rediss://{credentials}@127.0.0.1:{}", self.port)
    }

    fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap()
    }

    /// The CA and the client certificate the server accepts.
    fn tls(&self) -> RedisTls {
        RedisTls::new()
            .with_ca_pem(self.pem("ca.crt"))
            .with_client_cert_pem(self.pem("client.crt"), self.pem("client.key"))
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run openssl ({error}): this test makes its certificates with it; \
                     install it (Debian: apt-get install openssl)"
                )
            });
        assert!(status.success(), "openssl {args:?} failed");
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
        ]
        .into_iter()
        .chain([
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=a3s-lane test CA",
        ])
        .collect::<Vec<_>>(),
    );
    for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let subject = format!("/CN={name}");
        openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
            &subject,
        ]);
        let mut sign = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
        ];
        // Extensions make version 3 certificates, the only version rustls accepts.
        sign.extend(["-extfile", ext]);
        openssl(&sign);
    }
}

fn quick(config: RedisQueueConfig) -> RedisQueueConfig {
    config
        .with_connect_timeout(Duration::from_secs(3))
        .with_key_prefix("tls")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_runs_over_tls_with_an_acl_user_and_a_client_certificate() {
    let server = TlsServer::start();
    let config = quick(RedisQueueConfig::new(
        server.url(&format!("app:{PASSWORD}")),
    ))
    .with_tls(server.tls())
    .with_lane("jobs", LaneConfig::new(1, 4), 0);
    assert!(
        !format!("{config:?}").contains(PASSWORD),
        "a config's Debug shows no password: {config:?}"
    );
    let queue = RedisQueue::connect(config).await.unwrap();
    let handlers = HandlerRegistry::default();
    handlers.register(
        "echo",
        handler_fn(|payload, _ctx| async move { Ok(payload) }),
    );
    let worker = RedisWorker::start(&queue, handlers, RedisWorkerConfig::new(2))
        .await
        .unwrap();
    let handle = queue
        .submit("jobs", "echo", json!({"secure": true}))
        .await
        .unwrap();
    assert_eq!(handle.await.unwrap(), json!({"secure": true}));
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_say_why_and_never_show_the_password() {
    let server = TlsServer::start();
    let failure = |error: LaneError| {
        let message = error.to_string();
        assert!(
            !message.contains(PASSWORD),
            "the password leaked: {message}"
        );
        assert!(
            !message.contains("wrong-pass"),
            "the password leaked: {message}"
        );
        message
    };

    // A wrong password.
    let config = quick(RedisQueueConfig::new(server.url("app:wrong-pass"))).with_tls(server.tls());
    let message = failure(RedisQueue::connect(config).await.unwrap_err());
    assert!(
        message.contains(&format!("127.0.0.1:{}", server.port)),
        "{message}"
    );
    assert!(
        message.to_lowercase().contains("auth") || message.contains("WRONGPASS"),
        "{message}"
    );

    // The server's CA is not among the system's roots.
    let config = quick(RedisQueueConfig::new(
        server.url(&format!("app:{PASSWORD}")),
    ));
    let message = failure(RedisQueue::connect(config).await.unwrap_err());
    assert!(message.to_lowercase().contains("certificate"), "{message}");

    // No client certificate where the server asks for one.
    let config = quick(RedisQueueConfig::new(
        server.url(&format!("app:{PASSWORD}")),
    ))
    .with_tls(RedisTls::new().with_ca_pem(server.pem("ca.crt")));
    failure(RedisQueue::connect(config).await.unwrap_err());

    // Plain redis:// with certificates would not encrypt: refused before connecting.
    let config = quick(RedisQueueConfig::new(format!(
        "redis://app:{PASSWORD}@127.0.0.1:{}",
        server.port
    )))
    .with_tls(server.tls());
    let message = failure(config.validate().unwrap_err());
    assert!(message.contains("rediss://"), "{message}");
}

#[test]
fn a_bad_url_is_shown_without_its_password() {
    let config = RedisQueueConfig::new(format!("redis://app:{PASSWORD}@127.0.0.1:notaport"));
    let message = config.validate().unwrap_err().to_string();
    assert!(!message.contains(PASSWORD), "{message}");
    assert!(message.contains("app:***@127.0.0.1"), "{message}");
}
