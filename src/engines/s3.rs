//! A throwaway S3-compatible server: moto's (`pip install 'moto[server]'`, then
//! `moto_server`) on a free port of 127.0.0.1, in its own process group, killed on drop.
//! Everything it stores is in its memory. `SALESBOT_MOTO_SERVER` names another executable.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::EngineError;

#[derive(Debug)]
pub struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    /// Starts the server and waits until it answers.
    pub async fn start() -> Result<S3Server, EngineError> {
        let program =
            std::env::var("SALESBOT_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| EngineError::new(format!("no free port: {e}")))?;
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                EngineError::new(format!(
                    "cannot start {program} ({e}): pip install 'moto[server]'"
                ))
            })?;
        let server = S3Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        while client.get(server.endpoint()).send().await.is_err() {
            if Instant::now() > deadline {
                return Err(EngineError::new("moto_server did not answer within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`: what `AWS_ENDPOINT_URL` names.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto takes an unsigned request).
    pub async fn create_bucket(&self, name: &str) -> Result<(), EngineError> {
        let answer = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint()))
            .send()
            .await
            .map_err(|e| EngineError::new(format!("cannot create bucket {name}: {e}")))?;
        match answer.status().is_success() {
            true => Ok(()),
            false => Err(EngineError::new(format!(
                "cannot create bucket {name}: HTTP {}",
                answer.status()
            ))),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // `--` matters: procps' kill reads a bare `-<pgid>` as an option otherwise.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.child.wait();
    }
}
