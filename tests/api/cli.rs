//! The real `fenrun` binary: migrate, tokens, plans, ledger verify, workflows check.

use std::process::{Command, Output};

fn fenrun(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fenrun"))
        .args(args)
        .env("FENRUN_DATABASE_URL", database_url)
        .env_remove("FENRUN_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run fenrun")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_command_line_migrates_issues_tokens_applies_plans_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());

    let migrate = fenrun(&url, &["migrate"]);
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));

    let token = fenrun(&url, &["token", "create", "--role", "admin"]);
    assert!(token.status.success(), "{}", text(&token.stderr));
    let stdout = text(&token.stdout);
    let secret = stdout.split_whitespace().last().unwrap();
    assert!(
        secret.starts_with("fenrun_") && secret.len() > 60,
        "{stdout}"
    );

    let scoped = fenrun(&url, &["token", "create", "--role", "distributor"]);
    assert!(!scoped.status.success());
    assert!(text(&scoped.stderr).contains("--distributor"));

    let plan_dir = tempfile::tempdir().unwrap();
    let greedy = plan_dir.path().join("greedy.toml");
    std::fs::write(
        &greedy,
        "name = \"greedy\"\ndefault_grade = \"r\"\n[grades.r]\ndisplay_name = \"R\"\nlevels = [\"1%\", \"1%\", \"1%\", \"1%\"]\n",
    )
    .unwrap();
    let refused = fenrun(&url, &["plan", "apply", greedy.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("greedy.toml:5"), "{stderr}");

    let good = plan_dir.path().join("good.toml");
    std::fs::write(&good, "name = \"good\"\ndefault_grade = \"r\"\n[grades.r]\ndisplay_name = \"R\"\nlevels = [\"9%\"]\n").unwrap();
    let applied = fenrun(&url, &["plan", "apply", good.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    assert!(text(&applied.stdout).contains("version 2"));

    let verify = fenrun(&url, &["ledger", "verify", "--json"]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["postings_sum_fen"], 0);

    let check = fenrun(&url, &["workflows", "check"]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(text(&check.stdout).contains("cn.toml"));
}

#[test]
fn a_bad_setting_fails_the_start_with_its_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_fenrun"))
        .args(["migrate"])
        .env("FENRUN_DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("database_url"),
        "{}",
        text(&output.stderr)
    );
    let output = Command::new(env!("CARGO_BIN_EXE_fenrun"))
        .args(["migrate"])
        .env("FENRUN_DB_MAX_CONNECTIONS", "lots")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("db_max_connections"),
        "{}",
        text(&output.stderr)
    );
}

/// A loopback port free now (another process could take it before use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `fenrun sandbox-gateway` on a free port with `args` added; the process
/// and its port.
pub fn spawn_sandbox_gateway(args: &[&std::ffi::OsStr]) -> (std::process::Child, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_fenrun"))
        .args(["sandbox-gateway", "--port", &port.to_string()])
        .args(args)
        .env_remove("FENRUN_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the sandbox");
    (child, port)
}

/// The sandbox's ledger at `url` through `client`, once it answers.
pub async fn ledger_once_up(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(response) = client.get(url).send().await {
            return response
                .json::<serde_json::Value>()
                .await
                .expect("JSON ledger");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn the_sandbox_gateway_runs_on_its_own_and_shows_its_ledger() {
    let (mut child, port) = spawn_sandbox_gateway(&[
        "--faults".as_ref(),
        r#"{"latency_ms": 5, "confirm": {"mode": "hold"}}"#.as_ref(),
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime.block_on(ledger_once_up(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/sandbox/ledger"),
    ));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer["total_paid_fen"], 0);
    assert_eq!(answer["bills"], serde_json::json!([]));
}

#[test]
fn a_worker_process_answers_health_and_metrics_on_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("worker.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fenrun"))
        .arg("worker")
        .env("FENRUN_DATABASE_URL", &url)
        .env("FENRUN_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("FENRUN_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a worker");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (health, metrics) = runtime.block_on(async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
                let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                    .await
                    .expect("metrics")
                    .text()
                    .await
                    .expect("metrics text");
                break (response.status().as_u16(), metrics);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the worker did not answer"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health, 200);
    assert!(
        metrics.contains("fenrun_calendar_covered_days "),
        "{metrics}"
    );
}

#[test]
fn a_full_demo_run_logs_json_lines_with_step_context_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fenrun"))
        .args(["--log-format", "json", "demo", "--keep"])
        .arg(dir.path().join("demo.db"))
        .env("FENRUN_LOG_FILTER", "debug")
        .env_remove("FENRUN_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the demo");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let logs = text(&output.stderr);
    for secret in fenrun::cli::demo::secrets() {
        assert!(!logs.contains(&secret), "the logs hold {secret:?}");
        assert!(
            !stdout.contains(&secret),
            "the demo's output holds {secret:?}"
        );
    }
    // The shop's receiver got the demo's events, each verified; its
    // whsec_ secret is never shown.
    let webhooks = stdout
        .lines()
        .find(|line| line.starts_with("the shop received "))
        .unwrap_or_else(|| panic!("no webhooks line in the demo's output:\n{stdout}"));
    assert!(
        webhooks.contains(" verified, 0 refused,") && !webhooks.contains("received 0 events"),
        "{webhooks}"
    );
    for kind in [
        "commission.pending",
        "withdrawal.paid",
        "certificate.issued",
    ] {
        assert!(
            stdout
                .lines()
                .any(|line| line.trim_start().starts_with(kind)),
            "no {kind} count in the demo's output"
        );
    }
    for (what, printed) in [("output", &stdout), ("logs", &logs)] {
        let shown = printed.match_indices("whsec_").any(|(at, prefix)| {
            printed[at + prefix.len()..].starts_with(|next: char| {
                next.is_ascii_alphanumeric() || next == '+' || next == '/'
            })
        });
        assert!(!shown, "the demo's {what} show a webhook secret");
    }
    let mut steps = std::collections::BTreeMap::<String, usize>::new();
    for line in logs.lines().filter(|line| line.starts_with('{')) {
        let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        let Some(span) = entry.get("span").filter(|span| span["name"] == "step") else {
            continue;
        };
        let step = span["step"].as_str().expect("a step span names its step");
        assert!(span["attempt"].is_i64(), "no attempt: {line}");
        assert!(
            span.get("withdrawal_id").is_some() || span.get("release_at").is_some(),
            "a step's line without the withdrawal or release it works on: {line}"
        );
        *steps.entry(step.to_owned()).or_default() += 1;
    }
    for step in ["transfer", "certificate"] {
        assert!(
            steps.get(step).is_some_and(|lines| *lines > 0),
            "no {step} lines: {steps:?}"
        );
    }
}

/// `fenrun webhooks verify` as a receiver's author runs it: the convention's
/// test vector (saved, so past the freshness window: `--any-time`), a fresh
/// delivery signed during a rotation, and the refusals — a tampered body, a
/// stale timestamp, a malformed secret — each with exit code 1 or 2 and why.
#[test]
fn webhooks_verify_tells_a_genuine_delivery_from_a_tampered_or_stale_one() {
    use fenrun::domain::webhook_signature::{WebhookSecret, signature_header};
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, br#"{"test": 2432232314}"#).unwrap();
    let verify = |secret: &str, id: &str, timestamp: &str, signature: &str, extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fenrun"));
        command
            .env("FENRUN_WEBHOOK_SECRET", secret)
            .args(["webhooks", "verify", "--id", id, "--timestamp", timestamp])
            .args(["--signature", signature])
            .args(extra)
            .arg(&body);
        command.output().expect("run fenrun")
    };
    let vector = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    let saved = verify(SECRET, id, "1614265330", vector, &["--any-time"]);
    assert!(saved.status.success(), "{}", text(&saved.stdout));
    assert!(text(&saved.stdout).starts_with("genuine"));

    let stale = verify(SECRET, id, "1614265330", vector, &[]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        text(&stale.stdout).contains("timestamp"),
        "{}",
        text(&stale.stdout)
    );

    // Signed now, with the old and the new secret of a rotation.
    let now = chrono::Utc::now().timestamp();
    let old = WebhookSecret::from_bytes(vec![9; 32]).unwrap();
    let new = WebhookSecret::parse(SECRET).unwrap();
    let header = signature_header(&[&new, &old], "evt_1", now, br#"{"test": 2432232314}"#);
    let fresh = verify(&old.reveal(), "evt_1", &now.to_string(), &header, &[]);
    assert!(fresh.status.success(), "{}", text(&fresh.stdout));

    std::fs::write(&body, br#"{"test": 2432232315}"#).unwrap();
    let tampered = verify(SECRET, "evt_1", &now.to_string(), &header, &[]);
    assert_eq!(tampered.status.code(), Some(1));
    assert!(text(&tampered.stdout).starts_with("NOT genuine"));

    let malformed = verify("not-a-secret", "evt_1", &now.to_string(), &header, &[]);
    assert!(!malformed.status.success());
    assert!(
        text(&malformed.stderr).contains("whsec_"),
        "{}",
        text(&malformed.stderr)
    );
    assert!(!text(&malformed.stderr).contains("not-a-secret"));
}
