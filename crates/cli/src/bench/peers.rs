//! Starting and measuring peer systems (VictoriaMetrics, Prometheus) from their Debian binaries,
//! each on 127.0.0.1 with a fresh temporary data directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Finds a peer binary, installing its Debian package when missing (root only).
pub fn ensure_binary(bin: &str, package: &str) -> Result<PathBuf> {
    let find = || {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("{bin} not found; installing Debian package {package} with apt-get");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    match find() {
        Some(p) if ok => Ok(p),
        _ => bail!(
            "{bin} is missing and could not be installed: run `sudo apt-get install {package}`"
        ),
    }
}

pub struct Peer {
    pub name: &'static str,
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Peer {
    pub fn victoria_metrics() -> Result<Peer> {
        let bin = ensure_binary("victoria-metrics", "victoria-metrics")?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let child = Command::new(bin)
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=100y")
            .arg("-search.disableCache")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting victoria-metrics")?;
        let p =
            Peer { name: "victoria-metrics", child, url: format!("http://127.0.0.1:{port}"), dir };
        p.wait_http("/health")?;
        Ok(p)
    }

    /// This binary's `serve` on a fresh data dir (WAL fsync on, the default).
    pub fn promlake() -> Result<Peer> {
        Self::promlake_with("")
    }

    /// `promlake()` with a config file holding `toml` (empty: defaults).
    pub fn promlake_with(toml: &str) -> Result<Peer> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let config = dir.path().join("promlake.toml");
        std::fs::write(&config, toml)?;
        let child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args([
                "--http-listen",
                &format!("127.0.0.1:{port}"),
                "--grpc-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .env("PROMLAKE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting promlake serve")?;
        let p = Peer { name: "promlake", child, url: format!("http://127.0.0.1:{port}"), dir };
        p.wait_http("/-/ready")?;
        Ok(p)
    }

    /// Debian's Prometheus with the remote-write receiver on and no scrape targets.
    pub fn prometheus_receiver() -> Result<Peer> {
        let bin = ensure_binary("prometheus", "prometheus")?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        std::fs::write(dir.path().join("p.yml"), "global: {}\n")?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", dir.path().join("p.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus")?;
        let p = Peer { name: "prometheus", child, url: format!("http://127.0.0.1:{port}"), dir };
        p.wait_http("/-/ready")?;
        Ok(p)
    }

    pub fn wait_http(&self, path: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::blocking::Client::new();
        while Instant::now() < deadline {
            if client
                .get(format!("{}{path}", self.url))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{} did not become healthy within 30s", self.name)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kb * 1024)
}

/// User + system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = s.rsplit_once(')').map(|x| x.1).context("stat format")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).and_then(|v| v.parse().ok()).context("utime")?;
    let stime: f64 = f.get(12).and_then(|v| v.parse().ok()).context("stime")?;
    Ok((utime + stime) / 100.0)
}

/// Total bytes of the files under a directory.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Polls until the directory size stops changing for `quiet` (bounded by `max`).
pub fn wait_dir_stable(dir: &Path, quiet: Duration, max: Duration) -> u64 {
    let deadline = Instant::now() + max;
    let mut last = dir_bytes(dir);
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let now = dir_bytes(dir);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            break;
        }
    }
    last
}
