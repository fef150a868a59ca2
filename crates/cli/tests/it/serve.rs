//! `promlake serve`: zero-config start, health, readiness, signals, flush.

use crate::{Promlake, json};

#[test]
fn starts_healthy_and_ready_with_empty_answers() {
    let p = Promlake::start(&[]);
    assert_eq!(p.get("/-/healthy"), (200, "Healthy.\n".into()));
    assert_eq!(p.get("/-/ready").0, 200);
    let (code, body) = p.get("/api/v1/labels");
    assert_eq!(code, 200);
    assert_eq!(json(&body), serde_json::json!({"status": "success", "data": []}));
    let (code, body) = p.get("/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("promlake_http_request_duration_seconds"), "{body}");
}

#[test]
fn bad_parameters_are_400_bad_data() {
    let p = Promlake::start(&[]);
    let (code, body) = p.get("/api/v1/series?match[]=up{");
    assert_eq!(code, 400);
    assert_eq!(json(&body)["errorType"], "bad_data");
    let (code, body) = p.get("/api/v1/labels?start=yesterday");
    assert_eq!(code, 400);
    assert!(json(&body)["error"].as_str().unwrap().contains("start"), "{body}");
    let (code, _) = p.get("/api/v1/series");
    assert_eq!(code, 400, "series needs match[]");
    let r = crate::client()
        .get(format!("{}/api/v1/labels", p.url))
        .header("X-Scope-OrgID", "a/b")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn sigterm_and_sigint_shut_down_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut p = Promlake::start(&[]);
        let st = p.signal(sig);
        assert!(st.success(), "exit status {st:?} after signal {sig}");
    }
}

#[test]
fn flush_on_empty_head_writes_nothing() {
    let p = Promlake::start(&[]);
    let (code, body) = p.post("/api/v1/admin/tsdb/flush", "");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["data"]["blocks"], serde_json::json!([]));
}

#[test]
fn unknown_config_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "[storage]\nretension = \"1d\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promlake"))
        .arg("check-config")
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retension"), "{err}");
}
