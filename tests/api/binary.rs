//! The `salesbot` binary as an operator meets it: `--help`, a broken environment, `serve`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::test_env;

pub(crate) fn salesbot(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_salesbot"));
    // A clean environment and a folder without `.env`: only what the test sets is seen.
    cmd.env_clear().current_dir(dir);
    cmd
}

#[test]
fn help_describes_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = salesbot(dir.path()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for word in [
        "serve",
        "poll",
        "migrate",
        "status",
        "rekey",
        "import-legacy",
        "erase",
        "demo",
        "POLL_CRON",
        ".env.example",
    ] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
}

#[test]
fn the_demo_refuses_port_0_which_its_redirect_uris_cannot_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = salesbot(dir.path())
        .args(["demo", "--once", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(text.contains("'--port <PORT>'"), "{text}");
    assert!(!dir.path().join("demo-data").exists(), "nothing started");
}

#[test]
fn a_bare_environment_names_every_missing_variable_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = salesbot(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8(out.stderr).unwrap();
    for name in salesbot::config::REQUIRED {
        assert!(text.contains(name), "{name} not named:\n{text}");
    }
    assert_eq!(
        text.matches("missing required environment variables")
            .count(),
        1,
        "one error:\n{text}"
    );
}

#[test]
fn a_bad_env_line_is_named_with_its_file_and_line_and_nothing_of_it_is_used() {
    let dir = tempfile::tempdir().unwrap();
    // Every required variable is in the file, one line is malformed: none of them may be
    // reported missing (the file was not half-loaded) and the bad value is not echoed.
    let mut lines: Vec<String> = test_env(dir.path(), &[])
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    lines.sort();
    lines.insert(3, "FACEBOOK_REDIRECT_URI=not a url".into());
    std::fs::write(dir.path().join(".env"), lines.join("\n") + "\n").unwrap();

    let out = salesbot(dir.path()).arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(
        text.contains(".env line 4: FACEBOOK_REDIRECT_URI"),
        "{text}"
    );
    assert!(text.contains("quotes"), "{text}");
    assert!(
        !text.contains("missing"),
        "nothing reported missing: {text}"
    );
    assert!(
        !text.contains("not a url"),
        "the value is not echoed: {text}"
    );
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(!dir.path().join("data").exists(), "nothing written");
}

#[test]
fn a_port_in_use_is_reported_once_exits_1_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = salesbot(dir.path())
        .envs(test_env(
            dir.path(),
            &[("PORT", &port), ("RUST_LOG", "info")],
        ))
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        text.matches("Address already in use").count(),
        1,
        "said once: {text}"
    );
    assert!(
        text.contains(&format!("salesbot: cannot listen on 127.0.0.1:{port}")),
        "{text}"
    );
    // A start that cannot listen leaves nothing behind in a new DATA_DIR.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing written: {left:?}");
}

#[test]
fn serve_reports_its_port_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = salesbot(dir.path());
    // A schedule that does not fire during the test, so the scheduler starts and can be heard.
    cmd.envs(test_env(
        dir.path(),
        &[("RUST_LOG", "info"), ("POLL_CRON", "0 0 0 1 1 *")],
    ));
    let mut child = KillOnDrop(cmd.arg("serve").stderr(Stdio::piped()).spawn().unwrap());
    let stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut lines = stderr.lines();

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let addr = loop {
        assert!(Instant::now() < deadline, "no 'listening' line");
        let line = lines.next().expect("stderr open").unwrap();
        seen.push(line.clone());
        if let Some(at) = line.find("listening on http://") {
            let rest = &line[at + "listening on http://".len()..];
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert!(!addr.ends_with(":0"), "the real port is logged: {addr}");

    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    write!(
        stream,
        "GET /healthz?code=oauth-code-in-a-query HTTP/1.1\r\nHost: x\r\nX-Request-Id: req-7\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // The journal in DATA_DIR belongs to this server: a second one on it must not start.
    let second = salesbot(dir.path())
        .envs(test_env(dir.path(), &[]))
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains("in use by another `salesbot serve`: one server per DATA_DIR"),
        "{said}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    seen.extend(rest.iter().cloned());
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "clean exit on SIGTERM, got {status:?}; log: {rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.contains("salesbot stopped")),
        "{rest:?}"
    );
    // The scheduler's own start-up chatter ("Uninited") is not an operator's business.
    let all = seen.join("\n");
    assert!(all.contains("poll scheduled"), "{all}");
    assert!(!all.contains("tokio_cron_scheduler"), "{all}");
    // The derived-key warning is logged once, and no secret from the environment appears.
    assert_eq!(
        all.matches("TOKEN_ENCRYPTION_KEY is not set").count(),
        1,
        "{all}"
    );
    assert!(
        !all.contains("test-state-secret-of-at-least-32-bytes")
            && !all.contains("test-facebook-app-secret")
    );
    // One access line per request, with its id, and the path without its query.
    let access: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("salesbot::access"))
        .collect();
    assert_eq!(access.len(), 1, "{all}");
    for part in [
        "INFO",
        "method=GET",
        "path=/healthz",
        "status=200",
        "request_id=req-7",
    ] {
        assert!(access[0].contains(part), "{part} in {}", access[0]);
    }
    assert!(!all.contains("oauth-code-in-a-query"), "{all}");
}

/// A failed assertion must not leave a server running (it would also hold the test's output
/// open, so the harness would never finish).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Keys A, B and C, as `TOKEN_ENCRYPTION_KEY` takes them.
fn key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

fn sealed_under(byte: u8, db: &std::path::Path) -> salesbot::store::TokenStore {
    let cipher =
        salesbot::store::cipher::Cipher::new(&secrecy::SecretBox::new(Box::new([byte; 32])));
    salesbot::store::TokenStore::open_sqlite(db, cipher).unwrap()
}

#[tokio::test]
async fn keys_rotate_with_rekey_and_a_wrong_key_stops_the_start() {
    use salesbot::store::{TokenKey, TokenKind};
    use secrecy::{ExposeSecret, SecretString};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/tokens.db");
    let a = sealed_under(1, &db);
    let page_key = |id: &str| TokenKey::page_token(&salesbot::domain::PageId::parse(id).unwrap());
    let rows = [("101", "EAA-page-101"), ("202", "EAA-page-202")];
    for (id, value) in rows {
        let key = page_key(id);
        a.store(&key, &SecretString::from(value), TokenKind::Token)
            .await
            .unwrap();
    }
    drop(a);
    let run = |args: &[&str], current: u8, previous: Option<u8>| {
        let mut env = test_env(dir.path(), &[]);
        env.insert("TOKEN_ENCRYPTION_KEY".into(), key(current));
        if let Some(previous) = previous {
            env.insert(
                "TOKEN_ENCRYPTION_KEY_PREVIOUS".into(),
                format!("{},{}", key(9), key(previous)),
            );
        }
        env.insert("PORT".into(), "0".into());
        salesbot(dir.path()).args(args).envs(env).output().unwrap()
    };

    // B with A as previous: the start works (A's rows open), and rekey re-seals both.
    assert_eq!(run(&["status"], 2, Some(1)).status.code(), Some(0));
    let rekeyed = run(&["rekey"], 2, Some(1));
    let said = String::from_utf8_lossy(&rekeyed.stdout);
    assert_eq!(rekeyed.status.code(), Some(0), "{said}");
    assert!(said.contains("re-sealed 2 rows"), "{said}");
    let b = sealed_under(2, &db);
    for (id, value) in rows {
        let key = page_key(id);
        assert_eq!(b.get(&key).await.unwrap().unwrap().expose_secret(), value);
    }
    // Only B now: starts. Only A: a clear error naming a row, exit 2, no token in it.
    assert_eq!(run(&["status"], 2, None).status.code(), Some(0));
    let refused = run(&["serve"], 1, None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(page_key("101").as_str()), "{stderr}");
    assert!(stderr.contains("TOKEN_ENCRYPTION_KEY_PREVIOUS"), "{stderr}");
    assert!(!stderr.contains("EAA-page"), "{stderr}");

    // A row no configured key opens (sealed under C) is named, left alone, and rekey fails.
    let c = sealed_under(3, &db);
    let stray = page_key("303");
    c.store(
        &stray,
        &SecretString::from("EAA-page-303"),
        TokenKind::Token,
    )
    .await
    .unwrap();
    let partial = run(&["rekey"], 2, Some(1));
    let stderr = String::from_utf8_lossy(&partial.stderr);
    assert_eq!(partial.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(stray.as_str()) && stderr.contains("no configured key opens it"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&partial.stdout).contains("re-sealed 2 rows"));
    assert_eq!(
        sealed_under(3, &db)
            .get(&stray)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "EAA-page-303"
    );
}
