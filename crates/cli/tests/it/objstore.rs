//! Blocks in a real S3-compatible server: moto (`moto[server]` from PyPI, in the test venv of
//! `scripts/test.sh`) on 127.0.0.1. promlake writes its blocks there, reads them back after a
//! SIGKILL and from a second, empty data directory, makes no request for a query over blocks
//! it has loaded, and refuses to start on a bucket it cannot list. Without
//! `PROMLAKE_TEST_PYTHON` and without moto in `python3`, the moto tests are skipped loudly.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use model::{Labels, Sample, SeriesWrite, WriteBatch};

use crate::{Promlake, client, json, now_ms, remote_write};

/// A moto S3 server on a free port, killed on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto and waits (bounded) until it answers; `None` (after a loud message) when
    /// moto is not installed and `PROMLAKE_TEST_PYTHON` is unset.
    fn start() -> Option<Moto> {
        let explicit = std::env::var("PROMLAKE_TEST_PYTHON").ok();
        let python = explicit.clone().unwrap_or_else(|| "python3".into());
        let installed = Command::new(&python)
            .args(["-c", "import moto.server"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                explicit.is_none(),
                "moto[server] is not installed in PROMLAKE_TEST_PYTHON={python} \
                 (scripts/test.sh installs scripts/requirements-test.txt)"
            );
            eprintln!(
                "\n*** SKIPPED: the S3 (moto) tests need moto[server]: run scripts/test.sh, \
                 or set PROMLAKE_TEST_PYTHON to a python with scripts/requirements-test.txt ***\n"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto starts");
        let m = Moto { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while client().get(format!("{}/", m.url)).send().is_err() {
            assert!(Instant::now() < deadline, "moto did not answer within 60s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(m)
    }

    fn create_bucket(&self, bucket: &str) {
        let r = client().put(format!("{}/{bucket}", self.url)).send().unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// Keys under `prefix`, from the ListObjectsV2 XML.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let r = client()
            .get(format!("{}/{bucket}?list-type=2&prefix={prefix}", self.url))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "list: {}", r.status());
        let xml = r.text().unwrap();
        assert!(!xml.contains("<IsTruncated>true"), "one page holds every key");
        let mut keys: Vec<String> = xml
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect();
        keys.sort();
        keys
    }

    /// A config file pointing promlake's blocks at `s3://bucket/prefix` on this server.
    fn config(&self, dir: &std::path::Path, url: &str) -> std::path::PathBuf {
        let f = dir.join("objstore.toml");
        std::fs::write(
            &f,
            format!(
                "[storage]\nblocks_url = {url:?}\n[storage.s3]\nendpoint = {:?}\nregion = \
                 \"us-east-1\"\nallow_http = true\naccess_key_id = \"testing\"\n\
                 secret_access_key = \"testing\"\n",
                self.url
            ),
        )
        .unwrap();
        f
    }
}

/// `n` series `objstore_test_total{instance="i<k>"}`, one sample a minute over minutes
/// `[from, to)` of the `total` before `end`, value `k * 1000 + minute`.
fn data(n: usize, (from, to, total): (i64, i64, i64), end: i64) -> WriteBatch {
    let start = end - total * 60_000;
    WriteBatch {
        series: (0..n)
            .map(|k| SeriesWrite {
                labels: Labels::from_pairs([
                    ("__name__", "objstore_test_total".to_string()),
                    ("instance", format!("i{k}")),
                ])
                .unwrap(),
                samples: (from..to)
                    .map(|m| Sample { t: start + m * 60_000, v: (k as i64 * 1000 + m) as f64 })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        metadata: vec![],
    }
}

/// The `data` of an instant query's answer, as text (compared across restarts).
fn query(p: &Promlake, q: &str, t: i64) -> String {
    let r = client()
        .get(format!("{}/api/v1/query", p.url))
        .query(&[("query", q.to_string()), ("time", (t as f64 / 1000.0).to_string())])
        .send()
        .unwrap();
    let (code, body) = (r.status(), r.text().unwrap());
    assert_eq!(code, 200, "{body}");
    json(&body)["data"].to_string()
}

/// `promlake_block_store_requests{op}` from `/metrics`.
fn requests(p: &Promlake, op: &str) -> u64 {
    let (_, body) = p.get("/metrics");
    let prefix = format!("promlake_block_store_requests{{op=\"{op}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .parse()
        .unwrap()
}

#[test]
fn blocks_in_s3_survive_sigkill_and_serve_a_second_node() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("promlake-it");
    let dir = tempfile::tempdir().unwrap();
    let cfg = moto.config(dir.path(), "s3://promlake-it/blocks");
    let cfg_arg = cfg.to_str().unwrap().to_string();
    let p = Promlake::start(&["--config", &cfg_arg]);
    let now = now_ms();
    // In 20-minute slices, so no sample falls behind the out-of-order window.
    for from in (0..180).step_by(20) {
        remote_write(&p.url, None, &data(20, (from, from + 20, 180), now));
    }
    let (code, body) = p.post("/api/v1/admin/tsdb/flush", "");
    assert_eq!(code, 200, "{body}");
    assert!(!json(&body)["data"]["blocks"].as_array().unwrap().is_empty(), "{body}");

    // The blocks are objects in the bucket, under the prefix; nothing in data_dir/blocks.
    let keys = moto.keys("promlake-it", "blocks/");
    for file in ["meta.json", "series.parquet", "index.parquet", "samples.parquet"] {
        assert!(keys.iter().any(|k| k.ends_with(&format!("/{file}"))), "{file}: {keys:?}");
    }
    assert!(keys.iter().all(|k| k.starts_with("blocks/default/")), "{keys:?}");
    assert!(!p.dir.path().join("data").join("blocks").exists());

    let count = "sum(count_over_time(objstore_test_total[4h]))";
    let by_instance = "sort_desc(max_over_time(objstore_test_total[4h]))";
    let before = (query(&p, count, now), query(&p, by_instance, now));
    assert!(before.0.contains("\"3600\""), "20 series × 180 samples: {}", before.0);

    // SIGKILL and restart on the same data dir: the WAL was checkpointed at the flush, so
    // the answers come from the bucket.
    let p = p.restart(&["--config", &cfg_arg]);
    let gets_at_open = requests(&p, "get");
    assert_eq!((query(&p, count, now), query(&p, by_instance, now)), before);
    let gets = requests(&p, "get");
    assert!(gets > gets_at_open, "the samples were read from the bucket");
    // Blocks once loaded are held in memory: a repeated query makes no request.
    assert_eq!((query(&p, count, now), query(&p, by_instance, now)), before);
    assert_eq!(requests(&p, "get"), gets, "no GET for a query over loaded blocks");
    drop(p);

    // A second node with an empty data directory serves the same data from the bucket.
    let q = Promlake::start(&["--config", &cfg_arg]);
    assert_eq!((query(&q, count, now), query(&q, by_instance, now)), before);
    assert_eq!(client().get(format!("{}/-/ready", q.url)).send().unwrap().status(), 200);
}

/// Runs `promlake serve` with `config`, expecting it to exit (bounded) with an error; returns
/// its stderr.
fn serve_fails(config: &std::path::Path, data: &std::path::Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_promlake"))
        .args(["serve", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not give up on a bad block store within 90s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "serve exited with {status}: {err}");
    err
}

#[test]
fn serve_refuses_a_bucket_it_cannot_list() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let f = dir.path().join("closed.toml");
    std::fs::write(
        &f,
        format!(
            "[storage]\nblocks_url = \"s3://closed-bucket/p\"\n[storage.s3]\nendpoint = \
             \"http://127.0.0.1:{closed}\"\nallow_http = true\naccess_key_id = \"a\"\n\
             secret_access_key = \"b\"\n"
        ),
    )
    .unwrap();
    let err = serve_fails(&f, &dir.path().join("d1"));
    assert!(err.contains("s3://closed-bucket/p") && err.contains("blocks_url"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let Some(moto) = Moto::start() else { return };
    let f = moto.config(dir.path(), "s3://no-such-bucket");
    let err = serve_fails(&f, &dir.path().join("d2"));
    assert!(err.contains("s3://no-such-bucket") && err.contains("cannot list"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn check_config_checks_the_block_store_url() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let f = dir.path().join("c.toml");
        std::fs::write(&f, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_promlake"))
            .arg("check-config")
            .arg(&f)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap()
    };
    let out = check("[storage]\nblocks_url = \"gs://bucket\"\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("blocks_url") && err.contains("gs:// is not supported"), "{err}");
    let out = check(
        "[storage]\nblocks_url = \"s3://good-bucket/x\"\n[storage.s3]\naccess_key_id = \"AKID\"\n\
         secret_access_key = \"hunter2\"\n",
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(shown.contains("s3://good-bucket/x") && !shown.contains("hunter2"), "{shown}");
    // A secret without its key id is refused (object_store's own check), naming the URL.
    let out = check(
        "[storage]\nblocks_url = \"s3://good-bucket\"\n[storage.s3]\nsecret_access_key = \"s\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("s3://good-bucket") && err.contains("AccessKeyId"), "{err}");
}
