//! HAProxy (Debian's package) in front of test servers: the one address that changes servers under its
//! clients, as a load balancer or a failover proxy does in production.
//!
//! Each [`Backend`] gets a frontend on a free 127.0.0.1 port. A TCP backend (PostgreSQL) sends every
//! connection to its one enabled server, and the test moves it with [`Haproxy::switch`] (the old server's
//! connections are cut, as a failover does). An HTTP backend (Cerbos replicas) balances over every server
//! that passes its health check and redispatches a refused connection to another server. HAProxy runs in the
//! foreground under `timeout --kill-after=5 900`, is stopped by its PID when dropped, and is driven through its
//! admin socket. When HAProxy is missing a test is skipped loudly, except with `CI=true`, where it fails.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::required;

/// How a backend's connections are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain TCP to the first server only, until [`Haproxy::switch`] moves it.
    Failover,
    /// HTTP, balanced over the servers whose `GET health_path` answers 200.
    Balanced {
        /// The health check's path.
        health_path: &'static str,
    },
}

/// One backend: a name, its mode and its servers (name, port on 127.0.0.1).
#[derive(Debug, Clone)]
pub struct Backend {
    /// The backend's (and its frontend's) name.
    pub name: &'static str,
    /// How connections are handled.
    pub mode: Mode,
    /// The servers: a name and a port on 127.0.0.1.
    pub servers: Vec<(&'static str, u16)>,
}

/// A running HAProxy (see the module docs).
#[derive(Debug)]
pub struct Haproxy {
    dir: TempDir,
    child: Option<Child>,
    ports: Vec<(&'static str, u16)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn haproxy_bin() -> Option<PathBuf> {
    let found = ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !required(),
            "HAProxy is not installed, and CI=true: install Debian's haproxy package (scripts/test does)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: this test needs HAProxy (Debian's haproxy package)"
        );
    }
    found
}

impl Haproxy {
    /// Starts HAProxy with `backends`, or returns `None` (after a loud message) when it is not installed.
    ///
    /// # Panics
    ///
    /// When HAProxy is missing under `CI=true`, or does not start.
    pub fn start(backends: &[Backend]) -> Option<Haproxy> {
        let bin = haproxy_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("heimdall-haproxy-")
            .tempdir()
            .expect("a temporary directory");
        let socket = dir.path().join("admin.sock");
        let mut config = format!(
            "global\n  stats socket {} level admin\n  maxconn 4000\n\ndefaults\n  timeout connect 500ms\n  \
             timeout client 1h\n  timeout server 1h\n  timeout check 500ms\n  retries 3\n  option redispatch 1\n\n",
            socket.display()
        );
        let mut ports = Vec::new();
        for backend in backends {
            let port = free_port();
            ports.push((backend.name, port));
            let name = backend.name;
            match backend.mode {
                Mode::Failover => {
                    config.push_str(&format!(
                        "listen {name}\n  mode tcp\n  bind 127.0.0.1:{port}\n  balance first\n"
                    ));
                    for (i, (server, server_port)) in backend.servers.iter().enumerate() {
                        let state = if i == 0 { "" } else { " disabled" };
                        config.push_str(&format!("  server {server} 127.0.0.1:{server_port}{state}\n"));
                    }
                }
                Mode::Balanced { health_path } => {
                    config.push_str(&format!(
                        "listen {name}\n  mode http\n  bind 127.0.0.1:{port}\n  balance roundrobin\n  \
                         timeout client 30s\n  timeout server 30s\n  option httpchk GET {health_path}\n  \
                         http-check expect status 200\n  retry-on conn-failure empty-response\n"
                    ));
                    for (server, server_port) in &backend.servers {
                        config.push_str(&format!(
                            "  server {server} 127.0.0.1:{server_port} check inter 200 fall 1 rise 1\n"
                        ));
                    }
                }
            }
            config.push('\n');
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("write the HAProxy config");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("create the HAProxy log");
        let child = Command::new("timeout")
            .args(["--kill-after=5", "900"])
            .arg(bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start HAProxy under timeout(1)");
        let haproxy = Haproxy {
            dir,
            child: Some(child),
            ports,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while haproxy.command("show info").is_err() {
            assert!(
                Instant::now() < deadline,
                "HAProxy did not start; its log:\n{}",
                haproxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(haproxy)
    }

    /// The frontend port of backend `name`.
    ///
    /// # Panics
    ///
    /// When there is no such backend.
    pub fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .expect("a backend of this name")
    }

    /// Runs one command on the admin socket and returns its answer.
    ///
    /// # Errors
    ///
    /// When the socket cannot be reached.
    pub fn command(&self, command: &str) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(self.dir.path().join("admin.sock"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("{command}\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// Moves failover backend `backend` from server `from` to server `to`: `from` is put in maintenance and its
    /// connections are cut, then `to` takes new connections.
    ///
    /// # Panics
    ///
    /// When HAProxy refuses a command.
    pub fn switch(&self, backend: &str, from: &str, to: &str) {
        for command in [
            format!("set server {backend}/{from} state maint"),
            format!("shutdown sessions server {backend}/{from}"),
            format!("set server {backend}/{to} state ready"),
        ] {
            let answer = self.command(&command).expect("reach HAProxy's admin socket");
            assert!(answer.trim().is_empty(), "HAProxy refused `{command}`: {answer}");
        }
    }

    /// HAProxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
