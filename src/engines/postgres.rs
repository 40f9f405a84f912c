//! A throwaway PostgreSQL server: `initdb` into a temporary folder, `pg_ctl start` on a free
//! port of 127.0.0.1, stopped and removed on drop. Debian's `postgresql` package provides the
//! binaries (`apt-get install postgresql`); `SALESBOT_PG_BIN` names another folder of them.
//!
//! PostgreSQL refuses to run as root, so under root the server runs as the `postgres` user
//! (the package creates it) and the folder is given to that user.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::EngineError;

/// How the server treats durability: tests need speed, the benchmark the real thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync=off`, `synchronous_commit=off`: a crash of the machine may lose commits.
    Fast,
    /// PostgreSQL's defaults: a commit is on disk when it returns.
    Full,
}

#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The `postgres` user's (uid, gid) when this process is root.
    owner: Option<(u32, u32)>,
    durability: Durability,
    /// TLS is on, with a certificate for 127.0.0.1 signed by the CA in `tls/ca.pem`.
    tls: bool,
    running: bool,
}

impl Postgres {
    /// The folder holding `initdb` and `pg_ctl`, if PostgreSQL is installed.
    pub fn binaries() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("SALESBOT_PG_BIN") {
            return Some(PathBuf::from(dir));
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    }

    /// Creates a cluster and starts it; it listens on 127.0.0.1 only.
    pub fn start(durability: Durability) -> Result<Postgres, EngineError> {
        Self::start_with(durability, false)
    }

    /// As [`Self::start`], with TLS on (`ssl=on`): its certificate names 127.0.0.1 and is
    /// signed by a throwaway CA, [`Self::ca_file`]. Made with the `openssl` command, which
    /// Debian's `postgresql` package brings along (through `ssl-cert`).
    pub fn start_with_tls(durability: Durability) -> Result<Postgres, EngineError> {
        Self::start_with(durability, true)
    }

    /// The CA that signed the server's certificate, when TLS is on.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("tls/ca.pem"))
    }

    fn start_with(durability: Durability, tls: bool) -> Result<Postgres, EngineError> {
        let bin = Self::binaries().ok_or_else(|| {
            EngineError::new("PostgreSQL is not installed (apt-get install postgresql)")
        })?;
        let dir = tempfile::Builder::new()
            .prefix("salesbot-pg-")
            .tempdir()
            .map_err(|e| EngineError::new(format!("cannot make a folder for PostgreSQL: {e}")))?;
        let owner = postgres_user_if_root()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| {
                EngineError::new(format!("cannot give the folder to postgres: {e}"))
            })?;
        }
        let mut server = Postgres {
            dir,
            bin,
            port: 0,
            owner,
            durability,
            tls,
            running: false,
        };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data().display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )?;
        if tls {
            server.make_certificates()?;
        }
        server.port = free_port()?;
        server.resume()?;
        Ok(server)
    }

    /// `postgres://` URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once, as a crash would (`-m immediate`); [`Self::resume`] starts it
    /// again on the same port with the same data.
    pub fn halt(&mut self) -> Result<(), EngineError> {
        if self.running {
            let data = self.data().display().to_string();
            self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])?;
            self.running = false;
        }
        Ok(())
    }

    pub fn resume(&mut self) -> Result<(), EngineError> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            let tls = self.dir.path().join("tls");
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.pem -c ssl_key_file={0}/server.key",
                tls.display()
            ));
        }
        if self.durability == Durability::Fast {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let data = self.data().display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        )?;
        self.running = true;
        Ok(())
    }

    /// A CA, and a server certificate for 127.0.0.1 it signs; the key readable by the server
    /// only (PostgreSQL refuses a key others can read).
    fn make_certificates(&self) -> Result<(), EngineError> {
        let tls = self.dir.path().join("tls");
        std::fs::create_dir(&tls)
            .map_err(|e| EngineError::new(format!("cannot make {}: {e}", tls.display())))?;
        std::fs::write(tls.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
            .map_err(|e| EngineError::new(format!("cannot write san.ext: {e}")))?;
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let steps: [&[&str]; 3] = [
            &[
                &["req", "-x509"][..],
                &key,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-subj",
                    "/CN=salesbot test CA",
                    "-days",
                    "2",
                ],
            ]
            .concat(),
            &[
                &["req"][..],
                &key,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        ];
        for args in steps {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&tls)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| EngineError::new(format!("cannot run openssl: {e}")))?;
            if !output.status.success() {
                return Err(EngineError::new(format!(
                    "openssl {} failed: {}",
                    args[0],
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
        }
        let server_key = tls.join("server.key");
        std::fs::set_permissions(
            &server_key,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .map_err(|e| EngineError::new(format!("cannot protect server.key: {e}")))?;
        if let Some((uid, gid)) = self.owner {
            for path in [&tls, &server_key, &tls.join("server.pem")] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| {
                    EngineError::new(format!("cannot give {} to postgres: {e}", path.display()))
                })?;
            }
        }
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), EngineError> {
        let mut command = Command::new(self.bin.join(program));
        command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        let output = command
            .output()
            .map_err(|e| EngineError::new(format!("cannot run {program}: {e}")))?;
        if output.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        Err(EngineError::new(format!(
            "{program} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            tail(&log)
        )))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(err) = self.halt() {
            eprintln!("cannot stop the test PostgreSQL: {err}");
        }
    }
}

/// The `postgres` user, when this process runs as root (PostgreSQL will not).
fn postgres_user_if_root() -> Result<Option<(u32, u32)>, EngineError> {
    let id = |args: &[&str]| -> Option<u32> {
        let out = Command::new("id").args(args).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id(&["-u"]) != Some(0) {
        return Ok(None);
    }
    let missing = || EngineError::new("running as root, and there is no `postgres` user");
    let uid = id(&["-u", "postgres"]).ok_or_else(missing)?;
    let gid = id(&["-g", "postgres"]).ok_or_else(missing)?;
    Ok(Some((uid, gid)))
}

fn free_port() -> Result<u16, EngineError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| EngineError::new(format!("no free port: {e}")))
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.len().saturating_sub(10);
    match lines[start..].join("\n") {
        text if text.is_empty() => String::new(),
        text => format!("\nserver log:\n{text}"),
    }
}
