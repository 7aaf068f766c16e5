//! The server under test: its database (a fresh SQLite file, or a fresh PostgreSQL database),
//! the child process, start-to-healthy timing, and CPU and memory read from `/proc`.

use crate::http::Http;
use anyhow::{Context, bail};
use serde::Serialize;
use sqlx::Connection as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The database the server runs on, created by the bench and removed after.
pub enum Database {
    Sqlite {
        path: PathBuf,
        /// Kept alive so that the folder is removed at the end (unless `--keep`).
        _dir: Option<tempfile::TempDir>,
    },
    Postgres {
        /// The server the bench was given, used to create and drop the database.
        admin_url: String,
        name: String,
        url: String,
    },
}

impl Database {
    /// `None`: a SQLite file in a fresh temporary folder. `sqlite://PATH`: that file (created).
    /// `postgres://…`: a fresh database on that server, named `latchkey_bench_<time>_<pid>`.
    pub async fn prepare(url: Option<&str>, keep: bool) -> anyhow::Result<Self> {
        match url {
            None => {
                let dir = tempfile::Builder::new().prefix("latchkey-bench-").tempdir()?;
                let path = dir.path().join("bench.db");
                let dir = if keep {
                    let _ = dir.keep();
                    None
                } else {
                    *TEMPORARY_DIR.lock().expect("lock") = Some(dir.path().to_owned());
                    Some(dir)
                };
                Ok(Self::Sqlite { path, _dir: dir })
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or(path);
                Ok(Self::Sqlite { path: PathBuf::from(path), _dir: None })
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
                let name = format!("latchkey_bench_{stamp}_{}", std::process::id());
                let mut conn = sqlx::PgConnection::connect(url)
                    .await
                    .with_context(|| format!("cannot connect to {}", redact(url)))?;
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
                conn.close().await?;
                Ok(Self::Postgres { admin_url: url.to_owned(), url: with_database(url, &name)?, name })
            }
            Some(other) => bail!("--database-url must start with sqlite:// or postgres://, not {other:?}"),
        }
    }

    /// The URL to give the server.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Self::Postgres { url, .. } => url.clone(),
        }
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// What the database occupies: the SQLite file and its WAL, or `pg_database_size`.
    pub async fn size_bytes(&self) -> Option<u64> {
        match self {
            Self::Sqlite { path, .. } => {
                let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                Some(size(path) + size(&path.with_extension("db-wal")))
            }
            Self::Postgres { url, name, .. } => {
                let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
                let size: i64 = sqlx::query_scalar("SELECT pg_database_size($1)")
                    .bind(name)
                    .fetch_one(&mut conn)
                    .await
                    .ok()?;
                Some(size as u64)
            }
        }
    }

    /// How much of the SQLite file is in the kernel's page cache, read with util-linux's
    /// `fincore` when it is installed. A large database partly out of the cache makes reads
    /// wait for the disk, which changes the figures more than the size does.
    pub fn cached_bytes(&self) -> Option<u64> {
        let Self::Sqlite { path, .. } = self else { return None };
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
            .arg(path)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        parse_fincore(&String::from_utf8_lossy(&out.stdout))
    }

    /// Drops a PostgreSQL database the bench created (a temporary SQLite folder goes by itself).
    pub async fn remove(self, keep: bool) -> anyhow::Result<()> {
        if let Self::Postgres { admin_url, name, .. } = &self
            && !keep
        {
            let mut conn = sqlx::PgConnection::connect(admin_url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await?;
            conn.close().await?;
        }
        Ok(())
    }
}

/// `postgres://user@host:port/old?x` with the database name replaced.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").context("no scheme in the database URL")? + 3;
    let path_start = base[authority_start..].find('/').map(|i| i + authority_start).unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// A URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if s < at => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// What the bench needs to start a server.
pub struct ServerConfig {
    pub binary: PathBuf,
    pub database_url: String,
    pub smtp_url: String,
    pub admin_token: String,
    pub secret_key: String,
    /// Where the server's standard output and error go.
    pub log: PathBuf,
}

/// The process id of the bench's current server (0: none), for the Ctrl-C handler.
pub static CURRENT_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The temporary folder of the SQLite database, for the Ctrl-C handler to remove.
pub static TEMPORARY_DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Sends SIGTERM to a process (the server shuts down gracefully on it).
pub fn terminate(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

/// A running child server.
pub struct ServerProcess {
    child: Child,
    pub base_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Start {
    /// From spawning the process to the first 200 from `/healthz`.
    pub start_to_healthy_ms: f64,
    /// Resident memory once healthy, before any load.
    pub idle_rss_mb: f64,
    /// Challenges seeded into the database before this start.
    pub seeded_challenges: u64,
    pub database_bytes: Option<u64>,
    /// Of the SQLite file, what was in the page cache (when `fincore` could tell).
    pub database_cached_bytes: Option<u64>,
}

/// `fincore --bytes --noheadings --raw --output RES FILE` prints one number.
fn parse_fincore(out: &str) -> Option<u64> {
    out.trim().parse().ok()
}

impl ServerProcess {
    /// Spawns the server on a free loopback port and waits until it is healthy.
    pub async fn spawn(config: &ServerConfig) -> anyhow::Result<(Self, Duration)> {
        if !config.binary.exists() {
            bail!(
                "no server binary at {}: build it first with `cargo build --release -p latchkey`, or give --server-bin",
                config.binary.display()
            );
        }
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&config.log)?;
        let started = Instant::now();
        let child = Command::new(&config.binary)
            .arg("serve")
            .env("LATCHKEY_LISTEN", &listen)
            .env("LATCHKEY_DATABASE_URL", &config.database_url)
            .env("LATCHKEY_SECRET_KEY", &config.secret_key)
            .env("LATCHKEY_ADMIN_TOKEN", &config.admin_token)
            .env("LATCHKEY_SMTP_URL", &config.smtp_url)
            .env("LATCHKEY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", config.binary.display()))?;
        CURRENT_PID.store(child.id(), std::sync::atomic::Ordering::SeqCst);
        let mut server = Self { child, base_url: format!("http://{listen}") };
        let probe = Http::new(&server.base_url, 1);
        let deadline = started + Duration::from_secs(60);
        loop {
            if let Ok(answer) = probe.get("/healthz").await
                && answer.status.is_success()
            {
                return Ok((server, started.elapsed()));
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("the server exited with {status} before it was healthy; see {}", config.log.display());
            }
            if Instant::now() > deadline {
                server.stop();
                bail!("the server was not healthy after 60 s; see {}", config.log.display());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        CURRENT_PID.store(0, std::sync::atomic::Ordering::SeqCst);
        terminate(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A process's CPU time and memory, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// utime + stime, in seconds.
    pub cpu_seconds: f64,
    /// The part of it spent by the SQLite store's writer and checkpointer threads (their names
    /// start with `sqlite-`), from `/proc/<pid>/task/*/stat`: what writes cost, apart from
    /// the requests' own work. Zero for a server without them (PostgreSQL).
    pub store_thread_seconds: f64,
    /// VmRSS, in MiB.
    pub rss_mb: f64,
    /// VmHWM (peak resident size since start), in MiB.
    pub peak_rss_mb: f64,
}

/// Reads `/proc` for a process; `None` if it is gone or not readable.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let (_, cpu_seconds) = stat_cpu(&format!("/proc/{pid}/stat"))?;
    let store_thread_seconds = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|task| stat_cpu(&task.path().join("stat").to_string_lossy()))
                .filter(|(name, _)| name.starts_with("sqlite-"))
                .map(|(_, seconds)| seconds)
                .sum()
        })
        .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let value: f64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
        Some(value / 1024.0)
    };
    Some(ProcSample {
        cpu_seconds,
        store_thread_seconds,
        rss_mb: kib("VmRSS:")?,
        peak_rss_mb: kib("VmHWM:")?,
    })
}

/// A process's or thread's name and utime + stime in seconds, from its `stat` file.
fn stat_cpu(path: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_owned();
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name, field 0 is `state` (3rd in proc(5)); utime is 14th and stime 15th.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) as f64 / clock_ticks() as f64))
}

/// CPU time the whole machine spent, in seconds, from the first line of `/proc/stat`: to tell
/// how much of it others (builds, tests) took.
#[derive(Debug, Clone, Copy)]
pub struct MachineSample {
    /// user, nice, system and steal time of all processes on all cores.
    pub process_seconds: f64,
    /// irq and softirq time: mostly the kernel carrying the loopback traffic of the benchmark,
    /// which no process is charged for.
    pub interrupt_seconds: f64,
}

pub fn machine_sample() -> Option<MachineSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let t: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let tick = |i: usize| t.get(i).copied().unwrap_or(0) as f64 / clock_ticks() as f64;
    Some(MachineSample {
        process_seconds: tick(0) + tick(1) + tick(2) + tick(7),
        interrupt_seconds: tick(5) + tick(6),
    })
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), 100 when it cannot be asked.
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// A short description of this machine, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gb: f64,
    pub kernel: String,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gb = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kib| kib / 1024.0 / 1024.0)
            .unwrap_or(0.0);
        let kernel =
            std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self { cpus, cpu_model, memory_gb, kernel }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fincore_prints_the_resident_bytes() {
        assert_eq!(parse_fincore("4792123392\n"), Some(4_792_123_392));
        assert_eq!(parse_fincore(""), None);
        assert_eq!(parse_fincore("fincore: cannot open"), None);
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://h?sslmode=require", "b").unwrap(),
            "postgres://h/b?sslmode=require"
        );
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn reads_its_own_proc_entry() {
        let s = sample(std::process::id()).expect("/proc/self is readable");
        assert!(s.rss_mb > 0.0 && s.peak_rss_mb >= s.rss_mb && s.cpu_seconds >= 0.0);
        assert_eq!(s.store_thread_seconds, 0.0, "the bench has no store threads");
        assert!(machine_sample().is_some_and(|m| m.process_seconds > 0.0));
    }
}
