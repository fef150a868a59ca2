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
    let command = format!("apt-get install -y --no-install-recommends {package}");
    if !is_root() {
        bail!("{bin} is not installed; install it with `sudo {command}`");
    }
    eprintln!("{bin} not found; installing Debian package {package}: {command}");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    match find() {
        Some(p) if ok => Ok(p),
        _ => bail!(
            "{bin} is missing and `{command}` did not install it (try `apt-get update` first)"
        ),
    }
}

/// Whether this process runs with effective user id 0.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().nth(1))
            .is_some_and(|euid| euid == "0")
    })
}

/// A peer's version: its Debian package version (`dpkg-query`), else the first non-empty line
/// the binary prints for `flag` (e.g. `--version`).
pub fn peer_version(bin: &Path, flag: &str, package: &str) -> String {
    let first_line = |mut c: Command| {
        c.output().ok().filter(|o| o.status.success()).and_then(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
    };
    let mut dpkg = Command::new("dpkg-query");
    dpkg.args(["-W", "-f=${Version}", package]);
    if let Some(v) = first_line(dpkg) {
        return format!("{package} {v} (Debian package)");
    }
    let mut own = Command::new(bin);
    own.arg(flag);
    first_line(own).unwrap_or_else(|| "unknown".into())
}

pub struct Peer {
    pub name: &'static str,
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

/// promlake config turning range query splitting and the results cache off.
pub const NO_RESULTS_CACHE: &str = "[query]\nsplit_interval = \"0s\"\n";

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
            // Answer queries up to the newest sample, as promlake and Prometheus do.
            .arg("-search.latencyOffset=0s")
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
    /// promlake with the range query results cache off: side-by-side query latency compares
    /// evaluation, as VictoriaMetrics runs with `-search.disableCache` and Prometheus has no
    /// cache. The cache has its own benchmark (`bench query --refreshes`).
    pub fn promlake_uncached() -> Result<Peer> {
        Self::promlake_with(NO_RESULTS_CACHE)
    }

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

    /// Debian's Prometheus with the remote-write receiver on and no scrape targets (admin API on
    /// for [`Peer::prometheus_snapshot_bytes`]).
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
            .arg("--web.enable-admin-api")
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

    /// promlake: flushes the head into blocks (`POST /api/v1/admin/tsdb/flush`), then returns
    /// the data dir's size once background compaction has left it unchanged for `quiet`.
    pub fn promlake_flush(&self, quiet: Duration) -> Result<u64> {
        let client =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build()?;
        let r = client.post(format!("{}/api/v1/admin/tsdb/flush", self.url)).send()?;
        anyhow::ensure!(r.status().is_success(), "promlake flush: {}", r.status());
        Ok(wait_dir_stable(self.dir.path(), quiet, Duration::from_secs(120)))
    }

    /// VictoriaMetrics: flushes in-memory data, force-merges the monthly partitions holding
    /// `first_ms..=last_ms`, and returns the data dir's size once unchanged for `quiet`.
    pub fn victoria_compact(&self, first_ms: i64, last_ms: i64, quiet: Duration) -> Result<u64> {
        let client =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build()?;
        client.get(format!("{}/internal/force_flush", self.url)).send().context("force_flush")?;
        let month = |ms: i64| {
            let days = ms.div_euclid(86_400_000);
            // civil-from-days (Howard Hinnant), for the partition name YYYY_MM.
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            let y = yoe + era * 400 + i64::from(m <= 2);
            format!("{y:04}_{m:02}")
        };
        let mut parts = vec![month(first_ms), month(last_ms)];
        parts.dedup();
        for p in parts {
            client
                .get(format!("{}/internal/force_merge?partition_prefix={p}", self.url))
                .send()
                .context("force_merge")?;
        }
        Ok(wait_dir_stable(self.dir.path(), quiet, Duration::from_secs(120)))
    }

    /// Prometheus: a TSDB snapshot (`POST /api/v1/admin/tsdb/snapshot`) writes the head as a
    /// compacted block (index + chunks + meta); returns the snapshot's size. The WAL is not
    /// counted.
    pub fn prometheus_snapshot_bytes(&self) -> Result<u64> {
        let client =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build()?;
        let r = client.post(format!("{}/api/v1/admin/tsdb/snapshot", self.url)).send()?;
        anyhow::ensure!(r.status().is_success(), "prometheus snapshot: {}", r.status());
        let v: serde_json::Value = serde_json::from_slice(&r.bytes()?)?;
        let name = v["data"]["name"].as_str().context("snapshot name in the answer")?;
        Ok(dir_bytes(&self.dir.path().join("tsdb").join("snapshots").join(name)))
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
