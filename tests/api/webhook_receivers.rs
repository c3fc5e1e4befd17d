//! The README's webhook receivers (section "Receiving webhooks"), run as
//! written there: each snippet is taken from README.md by its
//! `<!-- receiver:… -->` marker, started with python3 or node and the
//! Standard Webhooks library of its ecosystem, and sent deliveries signed by
//! `fenrun::domain::webhook_signature`. A genuine one is accepted once
//! however often it comes; a changed body, a stale timestamp and another
//! secret are refused.
//!
//! Without the libraries the tests are skipped, saying so (`.ci/receivers`
//! installs them under `target/receivers/`); with `FENRUN_TEST_RECEIVERS=1`
//! (as `.ci/run` sets) a missing one fails them instead.
//! [`start_readme_receiver`] is for any test that wants a real receiver to
//! deliver to.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fenrun::domain::webhook_signature::{WebhookSecret, signature_header};
use reqwest::StatusCode;

/// How long a receiver may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an accepted event may take to show on the receiver's stdout.
const OUTPUT_TIMEOUT: Duration = Duration::from_secs(10);
/// What makes a missing library a failure rather than a skip.
const REQUIRED_VARIABLE: &str = "FENRUN_TEST_RECEIVERS";

/// Which of the README's receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Language {
    Python,
    Node,
}

impl Language {
    /// The README's marker before its fenced snippet.
    fn marker(self) -> &'static str {
        match self {
            Language::Python => "<!-- receiver:python -->",
            Language::Node => "<!-- receiver:node -->",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Language::Python => "receiver.py",
            Language::Node => "receiver.js",
        }
    }
}

/// A README receiver running on a free local port; killed when dropped.
pub(crate) struct Receiver {
    /// Where to POST deliveries.
    pub(crate) url: String,
    accepted: Arc<Mutex<Vec<String>>>,
    child: Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// The `accepted msg_… type` lines it has printed so far.
    pub(crate) fn accepted(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }

    /// Its accepted lines once there are at least `count`, within
    /// [`OUTPUT_TIMEOUT`].
    pub(crate) async fn wait_for_accepted(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + OUTPUT_TIMEOUT;
        loop {
            let lines = self.accepted();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver printed {lines:?}, not {count} accepted lines; its stderr:\n{}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where `.ci/receivers` installs the libraries.
fn installed() -> PathBuf {
    repository().join("target").join("receivers")
}

/// The text of the fenced block after `marker` in README.md, exactly.
fn readme_snippet(language: Language) -> String {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let (_, after) = readme
        .split_once(language.marker())
        .unwrap_or_else(|| panic!("README.md has no {}", language.marker()));
    let mut lines = after.lines().skip_while(|line| line.trim().is_empty());
    let fence = lines.next().unwrap_or_default();
    assert!(
        fence.starts_with("```"),
        "{} is not followed by a fenced block",
        language.marker()
    );
    let mut snippet: String = lines
        .take_while(|line| !line.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n");
    snippet.push('\n');
    snippet
}

/// The NODE_PATH that finds the locally installed package first.
fn node_path() -> String {
    let local = installed().join("node_modules").display().to_string();
    match std::env::var("NODE_PATH") {
        Ok(path) if !path.is_empty() => format!("{local}:{path}"),
        _ => local,
    }
}

/// Runs a check; `Err` with the error it printed (or why it could not
/// run), to say why a receiver cannot start.
fn check(program: &str, command: &mut Command) -> Result<(), String> {
    match command.stdin(Stdio::null()).output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            // The error itself: Python ends with it, Node prints its
            // version after it.
            let mut lines = stderr.lines().rev();
            let error = lines
                .clone()
                .find(|line| line.contains("Error"))
                .or_else(|| lines.find(|line| !line.trim().is_empty()));
            Err(format!("{program}: {}", error.unwrap_or("failed").trim()))
        }
        Err(error) => Err(format!("{program}: {error}")),
    }
}

/// The command that runs `language`'s receiver with its library, or why
/// there is none.
fn interpreter(language: Language) -> Result<Command, String> {
    match language {
        Language::Python => {
            let venv = installed().join("venv").join("bin").join("python");
            let mut failures = Vec::new();
            for python in [venv.display().to_string(), "python3".to_owned()] {
                match check(
                    &python,
                    Command::new(&python).args(["-c", "import standardwebhooks"]),
                ) {
                    Ok(()) => return Ok(Command::new(python)),
                    Err(failure) => failures.push(failure),
                }
            }
            Err(format!(
                "no python3 with the standardwebhooks module (PyPI) ({})",
                failures.join("; ")
            ))
        }
        Language::Node => {
            let path = node_path();
            check(
                "node",
                Command::new("node")
                    .args(["-e", "require('standardwebhooks')"])
                    .env("NODE_PATH", &path),
            )
            .map_err(|failure| {
                format!("no node with the standardwebhooks package (npm) ({failure})")
            })?;
            let mut node = Command::new("node");
            node.env("NODE_PATH", path);
            Ok(node)
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the README's `language` receiver with `secret` on a free port and
/// waits until it listens. `None`, after saying why on stderr, when its
/// library is not installed and `FENRUN_TEST_RECEIVERS=1` is not set (with
/// it set, that panics).
pub(crate) fn start_readme_receiver(language: Language, secret: &str) -> Option<Receiver> {
    let mut command = match interpreter(language) {
        Ok(command) => command,
        Err(missing) if std::env::var(REQUIRED_VARIABLE).as_deref() == Ok("1") => {
            panic!(
                "{REQUIRED_VARIABLE}=1 but there is {missing}: run .ci/receivers (it installs both under target/receivers/)"
            )
        }
        Err(missing) => {
            eprintln!(
                "webhook receiver test skipped ({language:?}): {missing}. Run .ci/receivers to install it, or set {REQUIRED_VARIABLE}=1 to make this a failure"
            );
            return None;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join(language.file_name());
    std::fs::write(&script, readme_snippet(language)).unwrap();
    // A file, not a pipe: the Python server logs every request there, and
    // an unread pipe would fill and stall it.
    let stderr = dir.path().join("stderr.txt");
    let port = free_port();
    let mut child = command
        .arg(&script)
        .env("FENRUN_WEBHOOK_SECRET", secret)
        .env("PORT", port.to_string())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap_or_else(|error| panic!("start the {language:?} receiver: {error}"));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("accepted ") {
                lines.lock().unwrap().push(line);
            }
        }
    });
    let mut receiver = Receiver {
        url: format!("http://127.0.0.1:{port}/"),
        accepted,
        child,
        stderr,
        _dir: dir,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let exited = receiver.child.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "the {language:?} receiver did not listen on {port} ({exited:?}); its stderr:\n{}",
            std::fs::read_to_string(&receiver.stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(receiver)
}

/// One delivery as fenrun sends it.
struct Delivery<'a> {
    id: &'a str,
    timestamp: i64,
    signature: String,
    body: String,
}

impl<'a> Delivery<'a> {
    fn signed(secret: &WebhookSecret, id: &'a str, timestamp: i64, body: &str) -> Delivery<'a> {
        Delivery {
            id,
            timestamp,
            signature: signature_header(&[secret], id, timestamp, body.as_bytes()),
            body: body.to_owned(),
        }
    }

    async fn send(&self, url: &str) -> StatusCode {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", self.id)
            .header("webhook-timestamp", self.timestamp.to_string())
            .header("webhook-signature", &self.signature)
            .body(self.body.clone())
            .send()
            .await
            .unwrap()
            .status()
    }
}

fn event(kind: &str, withdrawal: &str) -> String {
    serde_json::json!({
        "type": kind,
        "timestamp": "2026-12-06T03:00:00Z",
        "data": {"withdrawal_id": withdrawal, "state": "paid", "net": "1360.00"},
    })
    .to_string()
}

async fn a_readme_receiver_accepts_a_genuine_delivery_once_and_refuses_forgeries(
    language: Language,
) {
    let secret = WebhookSecret::from_bytes(vec![0x5a; 32]).unwrap();
    let other = WebhookSecret::from_bytes(vec![0xa5; 32]).unwrap();
    let Some(receiver) = start_readme_receiver(language, &secret.reveal()) else {
        return;
    };
    let now = chrono::Utc::now().timestamp();
    let body = event("withdrawal.paid", "wd0123456789abcdef0123456789ab");

    // Genuine, then the same delivery again (a retry): accepted once.
    let genuine = Delivery::signed(&secret, "msg_receiver_1", now, &body);
    assert_eq!(genuine.send(&receiver.url).await, StatusCode::NO_CONTENT);
    assert_eq!(genuine.send(&receiver.url).await, StatusCode::NO_CONTENT);

    // A changed body under the genuine signature.
    let tampered = Delivery {
        body: body.replace("1360.00", "9360.00"),
        ..Delivery::signed(&secret, "msg_receiver_2", now, &body)
    };
    assert_eq!(tampered.send(&receiver.url).await, StatusCode::BAD_REQUEST);
    // Signed ten minutes ago: past the five minutes' tolerance.
    let stale = Delivery::signed(&secret, "msg_receiver_3", now - 600, &body);
    assert_eq!(stale.send(&receiver.url).await, StatusCode::BAD_REQUEST);
    // Signed with another endpoint's secret.
    let forged = Delivery::signed(&other, "msg_receiver_4", now, &body);
    assert_eq!(forged.send(&receiver.url).await, StatusCode::BAD_REQUEST);

    // A second genuine event: its line comes after the first's, and
    // nothing came between (the receivers handle one request at a time).
    let next = event("withdrawal.returned", "wd0123456789abcdef0123456789ab");
    let later = Delivery::signed(&secret, "msg_receiver_5", now, &next);
    assert_eq!(later.send(&receiver.url).await, StatusCode::NO_CONTENT);
    assert_eq!(
        receiver.wait_for_accepted(2).await,
        [
            "accepted msg_receiver_1 withdrawal.paid",
            "accepted msg_receiver_5 withdrawal.returned",
        ]
    );
}

#[tokio::test]
async fn the_readme_python_receiver_verifies_with_standardwebhooks() {
    a_readme_receiver_accepts_a_genuine_delivery_once_and_refuses_forgeries(Language::Python).await;
}

#[tokio::test]
async fn the_readme_node_receiver_verifies_with_standardwebhooks() {
    a_readme_receiver_accepts_a_genuine_delivery_once_and_refuses_forgeries(Language::Node).await;
}

#[test]
fn each_readme_receiver_is_a_fenced_block_after_its_marker() {
    for (language, first) in [
        (Language::Python, "import os"),
        (Language::Node, "const http = require(\"node:http\");"),
    ] {
        let snippet = readme_snippet(language);
        assert!(snippet.starts_with(first), "{language:?}:\n{snippet}");
        assert!(snippet.contains("FENRUN_WEBHOOK_SECRET") && snippet.contains("PORT"));
        assert!(snippet.lines().count() <= 30, "{language:?} is no snippet");
    }
}
