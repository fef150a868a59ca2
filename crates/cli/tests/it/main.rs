//! End-to-end tests of the `promlake` binary, one test binary. Table of contents:
//! - `api`: parse_query, federate scraped by a real Prometheus, delete_series through
//!   restarts and flushes, snapshots served by a second promlake, per-query limits, `stats`,
//!   `limit`, self-metrics.
//! - `serve`: zero-config start, health and readiness, flags, signals, flush.
//! - `status`: runtimeinfo, flags, config, tsdb cardinality, rules, alerts, format_query.
//! - `export`: plain Parquet export read by DuckDB.
//! - `query`: PromQL answers identical to Prometheus, promtool as client, error types.
//! - `remote_write`: status codes, partial failure, tenants, kill -9, a real Prometheus sender.
//! - `promqltest_storage`: every upstream PromQL script against real storage (WAL, head, blocks),
//!   in process rather than through the binary.
//! - `remote_read`: a real Prometheus querying through promlake; streamed XOR chunks byte-equal
//!   to Prometheus' own; SAMPLES answers value by value; tenants and status codes.
//! - `push`: Pushgateway-style text pushes: every metric type, grouping labels, `@base64`,
//!   errors naming the line, and the same series as a real Pushgateway exposes.
//! - `metadata`: `/api/v1/metadata` equal to a real Prometheus' after it remote-writes its
//!   metadata; push HELP/TYPE; parameters; kill -9.
//! - `exemplars`: `/api/v1/query_exemplars` equal to a real Prometheus' (exemplar storage on,
//!   scraping an OpenMetrics target); remote write 1.0/2.0 exemplars, selectors
//!   inside expressions, time range, retries, kill -9.
//! - `import`: `/api/v1/import` backfill of 3-day-old text into blocks; 400 naming the line.
//! - `cache`: range query splitting and the results cache: answers equal to an unsplit
//!   server's, dashboard refreshes from the cache, late writes and imports seen, `@` not split.
//! - `objstore`: blocks in a real S3-compatible server (moto): flush into the bucket, SIGKILL,
//!   restart and a second node read them back, no request for a query over loaded blocks,
//!   `serve` refuses a bucket it cannot list, `check-config` checks the URL.
//! - `bench_compare`: `promlake bench compare --quick` against the real Prometheus and
//!   VictoriaMetrics: every figure present and positive, Markdown and PNGs written.
//!
//! Every test starts the real binary on 127.0.0.1:0 with a temporary data dir (see
//! [`Promlake::start`]) and talks to it over HTTP as a client would.

mod api;
mod bench_compare;
mod cache;
mod exemplars;
mod export;
mod import;
mod metadata;
mod objstore;
mod promqltest_storage;
mod push;
mod query;
mod remote_read;
mod remote_write;
mod serve;
mod status;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Promlake {
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Promlake {
    pub fn start(extra: &[&str]) -> Promlake {
        Self::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// Starts on port 0 in `dir` and waits (bounded) for the listening line and readiness.
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Promlake {
        let data = dir.path().join("data");
        let mut child = Command::new(env!("CARGO_BIN_EXE_promlake"))
            .args([
                "serve",
                "--http-listen",
                "127.0.0.1:0",
                "--grpc-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promlake starts");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("promlake: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(30)).expect("promlake prints its address");
        let p = Promlake { child, url, dir, log };
        p.wait_ready();
        p
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client().get(format!("{}/-/ready", self.url)).send()
                && r.status() == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("not ready within 30s");
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let r = client().get(format!("{}{}", self.url, path)).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        let r = client()
            .post(format!("{}{}", self.url, path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// Sends a signal and waits (bounded) for the exit status.
    pub fn signal(&mut self, sig: i32) -> std::process::ExitStatus {
        // SAFETY-free: libc::kill on our own child's pid.
        let pid = self.child.id() as i32;
        let rc = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(rc.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "did not exit after signal {sig}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restarts on the same data dir.
    pub fn restart(mut self, extra: &[&str]) -> Promlake {
        self.signal(libc::SIGKILL);
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Promlake::start_in(dir, extra)
    }
}

impl Drop for Promlake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Remote-writes `batch` (1.0, snappy) to `url`, optionally as `tenant`; asserts a 2xx.
pub fn remote_write(url: &str, tenant: Option<&str>, batch: &model::WriteBatch) {
    let body = wire::snappy::compress(&wire::encode_write_v1(batch));
    let mut r = client()
        .post(format!("{url}/api/v1/write"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0");
    if let Some(t) = tenant {
        r = r.header("x-scope-orgid", t);
    }
    let r = r.body(body).send().unwrap();
    assert!(r.status().is_success(), "{url}: {} {}", r.status(), r.text().unwrap_or_default());
}

pub fn client() -> reqwest::blocking::Client {
    storage::objstore::install_crypto_provider();
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A peer daemon (Debian's prometheus, pushgateway) on a free port with its own temp dir,
/// killed on drop.
pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Runs `program` with the args `args(dir, port)` builds and waits (bounded) until
    /// `ready_path` answers 200.
    pub fn start(
        program: &str,
        args: impl FnOnce(&std::path::Path, u16) -> Vec<String>,
        ready_path: &str,
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(program)
            .args(args(dir.path(), port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("Debian's {program} is installed (scripts/test.sh): {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let d = Daemon { child, url, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client()
            .get(format!("{}{ready_path}", d.url))
            .send()
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(Instant::now() < deadline, "{program} not ready within 30s");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Unix time now in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
