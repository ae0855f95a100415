//! Private servers that speak TLS or require a login, for the tests of the service's security
//! settings: a throwaway CA (`scripts/make-test-pki`), tansu behind stunnel (Kafka over TLS),
//! tansu with SCRAM users (the crates.io build with sqlite storage), redis-server with TLS and an
//! ACL user. Each runs on ports of its own and is killed on drop; none touches the shared stack.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::e2e::free_loopback_port;
use super::kafka::PrivateTansu;
use super::stack::stack_port_open;

/// Waits until `addr` accepts TCP connections; panics naming `what` after 20 s.
fn wait_port(addr: &str, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stack_port_open(addr) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before opening {addr}");
        }
        assert!(Instant::now() < deadline, "{what} did not open {addr} within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A test CA, a server certificate it signed for 127.0.0.1/localhost, and an unrelated CA.
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Makes fresh material with `scripts/make-test-pki` in a temporary directory.
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make-test-pki");
        let out = Command::new("bash").arg(script).arg(dir.path()).output().expect("run make-test-pki");
        assert!(out.status.success(), "make-test-pki failed: {}", String::from_utf8_lossy(&out.stderr));
        TestPki { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed the server certificate (what a client must trust).
    pub fn ca(&self) -> PathBuf {
        self.file("ca.pem")
    }

    /// A CA that signed nothing here: trusting only it, verification fails.
    pub fn other_ca(&self) -> PathBuf {
        self.file("other-ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.file("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.file("server.key")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Debian's stunnel4 terminating TLS (the PKI's server certificate) on `tls_port` in front of a
/// plain TCP server.
pub struct Stunnel {
    pub tls_port: u16,
    child: Option<Child>,
}

impl Stunnel {
    /// Starts `stunnel4` (foreground) accepting TLS on `tls_port` and forwarding to `to_port`.
    pub fn start(pki: &TestPki, tls_port: u16, to_port: u16) -> Stunnel {
        let conf = pki.dir().join(format!("stunnel-{tls_port}.conf"));
        let text = format!(
            "foreground = yes\npid =\nsyslog = no\ndebug = 3\n[kafka]\naccept = 127.0.0.1:{tls_port}\n\
             connect = 127.0.0.1:{to_port}\ncert = {}\nkey = {}\n",
            pki.server_cert().display(),
            pki.server_key().display()
        );
        std::fs::write(&conf, text).expect("stunnel config");
        let bin = std::env::var("CXONE_STACK_STUNNEL_BIN").unwrap_or_else(|_| "stunnel4".to_owned());
        let mut child = Command::new(&bin)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin} (scripts/install-stack installs stunnel4): {e}"));
        wait_port(&format!("127.0.0.1:{tls_port}"), "stunnel4", &mut child);
        Stunnel { tls_port, child: Some(child) }
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// The stack's tansu (memory storage, transactions) reachable only over TLS: tansu on a private
/// plain port advertising the stunnel port, so every connection a client makes goes through TLS.
pub struct TlsKafka {
    pub stunnel: Stunnel,
    pub tansu: PrivateTansu,
}

impl TlsKafka {
    pub fn start(pki: &TestPki) -> TlsKafka {
        let tls_port = free_loopback_port();
        let mut tansu = PrivateTansu::on_free_port().advertising(format!("tcp://127.0.0.1:{tls_port}"));
        tansu.start();
        let stunnel = Stunnel::start(pki, tls_port, tansu.port);
        TlsKafka { stunnel, tansu }
    }

    /// The bootstrap address (the TLS port).
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.stunnel.tls_port)
    }
}

/// The tansu built from crates.io with the `libsql` feature (`CXONE_STACK_TANSU_LIBSQL_BIN`, else
/// where scripts/install-stack puts it).
pub fn tansu_libsql_bin() -> PathBuf {
    std::env::var_os("CXONE_STACK_TANSU_LIBSQL_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/cxone-ingest/tools/tansu-libsql/bin/tansu")
    })
}

/// A tansu broker that requires a SCRAM login (`--authentication`), with one SCRAM-SHA-512 user.
/// The crates.io 0.6.0 build with sqlite storage: it keeps users across the restart that turns
/// authentication on, and answers InitProducerId and CreateTopics, but never completes a
/// transaction's commit (no EndTxn).
pub struct SaslKafka {
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl SaslKafka {
    /// Starts the broker without authentication, creates `user` with `password` (SCRAM-SHA-512),
    /// and starts it again with authentication required.
    pub fn start(user: &str, password: &str) -> SaslKafka {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_loopback_port();
        let mut broker = SaslKafka { port, child: None, _dir: dir };
        broker.run(false);
        let url = format!("tcp://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new(tansu_libsql_bin())
                .args(["user", "create", "--broker", &url, "--mechanism", "scram512", user, password])
                .stdin(Stdio::null())
                .output()
                .expect("tansu user create");
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "tansu user create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        kill(&mut broker.child);
        broker.run(true);
        broker
    }

    fn run(&mut self, authentication: bool) {
        let bin = tansu_libsql_bin();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // tansu reads the sqlite URL's path relative to its working directory.
        let mut command = Command::new(&bin);
        command
            .current_dir(self._dir.path())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"]);
        if authentication {
            command.arg("--authentication");
        }
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(
                |e| panic!("starting {} (scripts/install-stack builds it): {e}", bin.display()),
            );
        wait_port(&self.brokers(), "tansu (libsql)", &mut child);
        self.child = Some(child);
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SaslKafka {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A redis-server of one test that speaks only TLS (the PKI's server certificate; no client
/// certificates) and knows one ACL user; the default user is off.
pub struct TlsRedis {
    pub port: u16,
    child: Option<Child>,
}

impl TlsRedis {
    pub fn start(pki: &TestPki, user: &str, password: &str) -> TlsRedis {
        let port = free_loopback_port();
        let bin =
            std::env::var("CXONE_STACK_REDIS_BIN").unwrap_or_else(|_| "/usr/bin/redis-server".to_owned());
        let mut child = Command::new(&bin)
            .args(["--bind", "127.0.0.1", "--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(pki.server_cert())
            .arg("--tls-key-file")
            .arg(pki.server_key())
            .arg("--tls-ca-cert-file")
            .arg(pki.ca())
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
            .args(["--user", user, "on", &format!(">{password}"), "~*", "&*", "+@all"])
            .args(["--user", "default", "off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin} (scripts/install-stack installs it): {e}"));
        wait_port(&format!("127.0.0.1:{port}"), "redis-server (TLS)", &mut child);
        TlsRedis { port, child: Some(child) }
    }

    /// `rediss://user:password@127.0.0.1:PORT`.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!("rediss://{user}:{password}@127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
