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
    /// Server options beyond the socket, port and address ones (`-c name=value ...`).
    options: String,
}

/// The server options every private cluster runs with.
const OPTIONS: &str = "-c fsync=off -c max_connections=50";

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
        let mut cluster = Self::empty(OPTIONS)?;
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

    /// A primary that makes every commit wait until its standby has it ([`PrivateCluster::standby_of`], which
    /// must follow), with room for `max_connections`.
    ///
    /// # Panics
    ///
    /// As [`PrivateCluster::start`].
    pub fn start_primary(max_connections: u32) -> Option<PrivateCluster> {
        let mut cluster = Self::start()?;
        cluster.options = format!(
            "-c fsync=off -c max_connections={max_connections} -c synchronous_commit=on \
             -c synchronous_standby_names=standby -c wal_keep_size=256MB"
        );
        cluster.stop();
        cluster.restart();
        Some(cluster)
    }

    /// A hot standby of `primary`, streaming its WAL synchronously (its `application_name` is the one the
    /// primary's `synchronous_standby_names` names), copied with `pg_basebackup` and started. It does not
    /// inherit the primary's `synchronous_standby_names` (a command-line option), so once promoted it commits
    /// without waiting for anyone.
    ///
    /// # Panics
    ///
    /// When the copy or the start fails.
    pub fn standby_of(primary: &PrivateCluster, max_connections: u32) -> PrivateCluster {
        let options =
            format!("-c fsync=off -c max_connections={max_connections} -c cluster_name=standby -c hot_standby=on");
        let mut standby = Self::empty(&options).expect("the primary's binaries are there");
        let data = standby.data();
        standby.run(
            standby
                .command("pg_basebackup")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary.port.to_string(),
                    "-U",
                    "postgres",
                    "-D",
                ])
                .arg(&data)
                .args(["-R", "-X", "stream", "--no-sync"]),
        );
        standby.restart();
        standby
    }

    /// Promotes a standby to a primary and waits until it accepts writes.
    pub fn promote(&self) {
        self.run(
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-w", "promote"]),
        );
    }

    /// The cluster's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A cluster directory with nothing in it yet (owned by `postgres` when the tests run as root).
    fn empty(options: &str) -> Option<PrivateCluster> {
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
        let cluster = PrivateCluster {
            dir,
            port,
            running: false,
            as_postgres,
            options: options.to_owned(),
        };
        if as_postgres {
            cluster.run(Command::new("chown").args(["-R", "postgres:"]).arg(cluster.dir.path()));
        }
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
            "-k {} -p {} -c listen_addresses=127.0.0.1 {}",
            self.dir.path().display(),
            self.port,
            self.options
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
