//! A private PostgreSQL cluster for one test: for tests that stop and start the database, which they must
//! not do to the cluster other tests share.
//!
//! It is made with `initdb` and run with `pg_ctl` from PATH (PostgreSQL 15's binaries), as the `postgres`
//! user when the tests run as root (both refuse to run as root), in a temporary directory, on a free
//! 127.0.0.1 port. Dropping it stops the server (`-m immediate`) and removes the directory. When the
//! binaries are missing the test is skipped loudly, except with `CI=true`, where it fails.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::required;

/// A PostgreSQL server of its own (see the module docs).
#[derive(Debug)]
pub struct PrivateCluster {
    dir: TempDir,
    port: u16,
    running: bool,
    as_postgres: bool,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
}

impl PrivateCluster {
    /// Makes and starts a cluster, or returns `None` (after a loud message) when PostgreSQL's binaries are
    /// not on PATH and the test is not running under CI.
    ///
    /// # Panics
    ///
    /// When the binaries are missing under `CI=true`, or the cluster cannot be made or started.
    pub fn start() -> Option<PrivateCluster> {
        if !(on_path("initdb") && on_path("pg_ctl")) {
            if required() {
                panic!("initdb and pg_ctl are not on PATH, and CI=true: install PostgreSQL 15");
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: this test needs PostgreSQL 15's initdb and pg_ctl on PATH"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let as_postgres = is_root();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut cluster = PrivateCluster {
            dir,
            port,
            running: false,
            as_postgres,
        };
        if as_postgres {
            cluster.run(Command::new("chown").args(["-R", "postgres:"]).arg(cluster.dir.path()));
        }
        let data = cluster.data();
        cluster.run(cluster.command("initdb").arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        cluster.restart();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command running `tool` as the `postgres` user when the tests run as root.
    fn command(&self, tool: &str) -> Command {
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", tool]);
            c
        } else {
            Command::new(tool)
        };
        c.current_dir("/").stdin(Stdio::null());
        c
    }

    fn run(&self, command: &mut Command) {
        let out = command.output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A DSN for the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`-m immediate`): clients see their connections drop.
    pub fn stop(&mut self) {
        if self.running {
            self.run(
                self.command("pg_ctl")
                    .arg("-D")
                    .arg(self.data())
                    .args(["-m", "immediate", "-w", "stop"]),
            );
            self.running = false;
        }
    }

    /// Starts the server (again), on the same port and data.
    pub fn restart(&mut self) {
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.dir.path().display(),
            self.port
        );
        let log = self.dir.path().join("server.log");
        self.run(
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(&log)
                .args(["-o", &options, "-w", "start"]),
        );
        self.running = true;
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Where the cluster lives.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "stop"])
                .output();
        }
    }
}
