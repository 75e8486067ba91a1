//! Helpers shared by the end-to-end tests that run the real binary as child
//! processes (`cluster.rs`, `migration.rs`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    )
}

pub fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

/// A child process killed on drop.
pub struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        let child =
            cmd.env("STRATA_LOG", "info").stdout(Stdio::null()).stderr(file).spawn().unwrap();
        Proc { child: Some(child), log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, if the process has exited by itself.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().unwrap()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and a clean exit.
    pub fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) }, 0);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "exited with {status}: {}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "did not stop: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn lsn(n: u64) -> String {
    format!("{:X}/{:X}", n >> 32, n & 0xffff_ffff)
}

pub fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// Starts `strata control` on 127.0.0.1:`port` with its SQLite store in `dir`
/// (`control.db`, log `control.log`); returns once it listens.
pub fn start_control(dir: &std::path::Path, port: u16, token: &str) -> Proc {
    start_control_with(dir, port, token, &[])
}

/// [`start_control`] with more arguments (`--node-token-file F`).
pub fn start_control_with(dir: &std::path::Path, port: u16, token: &str, more: &[&str]) -> Proc {
    let db = format!("sqlite:{}", dir.join("control.db").display());
    start_control_on(dir, port, token, &db, more)
}

/// [`start_control_with`] on the store `db` names (`sqlite:PATH` or `postgres://…`).
pub fn start_control_on(
    dir: &std::path::Path,
    port: u16,
    token: &str,
    db: &str,
    more: &[&str],
) -> Proc {
    let p = Proc::spawn(
        strata()
            .args(["control", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--db", db, "--token", token])
            .args(more),
        dir.join("control.log"),
    );
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "control plane did not listen: {}", p.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

/// The WARN and ERROR lines of a node's log (ANSI colours removed) that contain
/// none of `allowed`.
pub fn unexpected_log_lines(log: &str, allowed: &[&str]) -> Vec<String> {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence: ESC [ ... letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .filter(|l| !allowed.iter().any(|a| l.contains(a)))
        .map(str::to_owned)
        .collect()
}

/// PostgreSQL for the control-plane tests (`DATABASE_URL`, e.g.
/// `DATABASE_URL=$(bash scripts/pg-local.sh start 55432)`).
pub mod pg {
    /// `DATABASE_URL`, or `None` after saying the test is skipped; under
    /// `CI=true` a missing URL fails instead (.ci/run starts the server).
    pub fn database_url() -> Option<String> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var("CI").as_deref() == Ok("true") => {
                panic!(
                    "DATABASE_URL is not set under CI=true: .ci/run starts PostgreSQL and exports it"
                )
            }
            _ => {
                println!(
                    "DATABASE_URL is not set: SKIPPED (DATABASE_URL=$(bash scripts/pg-local.sh start 55432) runs it)"
                );
                None
            }
        }
    }

    /// A new empty schema in the database at `DATABASE_URL`, and a URL whose
    /// connections use it (`options=-c search_path=…`), so each test starts from
    /// an empty store and leaves the database's own tables alone.
    pub fn fresh_schema_url(test: &str) -> Option<String> {
        let url = database_url()?;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let schema = format!("{test}_{}_{nanos}", std::process::id());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (client, connection) = url
                .parse::<tokio_postgres::Config>()
                .unwrap()
                .connect(tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
        });
        let sep = if url.contains('?') { '&' } else { '?' };
        Some(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
    }
}
