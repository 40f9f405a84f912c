//! `DATABASE_URL` parsed once, at start: where the database is and how the connection is
//! protected.
//!
//! TLS follows libpq's `sslmode` words with one difference: whenever TLS is used, the server's
//! certificate is verified, its name included (libpq checks nothing below `verify-full`). An
//! unverified channel protects against nobody who can sit in the middle, and the URL carries
//! the password. `sslrootcert=<file>` names the CA to trust (a managed database's own CA, or a
//! private one); without it the system's CA certificates are used.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;

/// A parsed `DATABASE_URL`. Its `Debug` never shows the password.
#[derive(Clone)]
pub struct DatabaseTarget {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: Tls,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tls {
    /// `sslmode=disable`: plain TCP (a database on the same machine or a private network).
    Off,
    /// TLS when the server offers it (`prefer`, the default) or always (`require` and
    /// stricter), the certificate verified against `roots`.
    Verified { roots: Roots },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Roots {
    System,
    /// The certificates of `sslrootcert`, read at start.
    File(Vec<CertificateDer<'static>>),
}

impl std::fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseTarget")
            .field("hosts", &self.config.get_hosts())
            .field("ssl_mode", &self.config.get_ssl_mode())
            .finish_non_exhaustive()
    }
}

impl DatabaseTarget {
    /// Parses a `postgres://` URL. The reasons never repeat the URL: it may hold a password.
    pub fn parse(url: &str) -> Result<DatabaseTarget, String> {
        const SHAPE: &str = "must be a PostgreSQL URL such as \
            postgres://user:password@host:5432/salesbot (unset for the embedded SQLite files)";
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(SHAPE.into());
        }
        let mut parsed = url::Url::parse(url).map_err(|_| SHAPE.to_string())?;
        let mut mode = None;
        let mut root_file = None;
        let mut kept = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match &*key {
                "sslmode" => mode = Some(value.into_owned()),
                "sslrootcert" => root_file = Some(PathBuf::from(value.into_owned())),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        let mut config: tokio_postgres::Config = parsed.as_str().parse().map_err(|e| {
            // tokio-postgres's cause names the option at fault, never a value.
            match std::error::Error::source(&e) {
                Some(cause) => format!("{SHAPE}; {cause}"),
                None => format!("{SHAPE}; {e}"),
            }
        })?;
        let ssl_mode = match mode.as_deref().unwrap_or("prefer") {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" | "verify-ca" | "verify-full" => SslMode::Require,
            other => {
                return Err(format!(
                    "sslmode={other} is not known: use disable, prefer, require or verify-full"
                ));
            }
        };
        config.ssl_mode(ssl_mode);
        let tls = match (ssl_mode, root_file) {
            (SslMode::Disable, Some(_)) => {
                return Err("sslrootcert is given but sslmode=disable turns TLS off".into());
            }
            (SslMode::Disable, None) => Tls::Off,
            (_, None) => Tls::Verified {
                roots: Roots::System,
            },
            (_, Some(path)) => Tls::Verified {
                roots: Roots::File(read_certificates(&path)?),
            },
        };
        Ok(DatabaseTarget { config, tls })
    }

    /// The rustls settings for a verified connection, `None` for plain TCP.
    pub(super) fn client_config(&self) -> Result<Option<rustls::ClientConfig>, String> {
        let Tls::Verified { roots } = &self.tls else {
            return Ok(None);
        };
        let mut store = rustls::RootCertStore::empty();
        match roots {
            Roots::File(certs) => {
                for cert in certs {
                    store.add(cert.clone()).map_err(|e| {
                        format!("sslrootcert holds a certificate rustls refuses: {e}")
                    })?;
                }
            }
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
                if store.is_empty() {
                    return Err("no CA certificates found on this system: install \
                                ca-certificates, name one with sslrootcert=<file>, or use \
                                sslmode=disable"
                        .into());
                }
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Some(config))
    }
}

fn read_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("sslrootcert {shown}: not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err(format!("sslrootcert {shown}: holds no certificate"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_verified_unless_turned_off() {
        let target = DatabaseTarget::parse("postgres://u:p@db.example:5432/salesbot").unwrap();
        assert_eq!(target.config.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(
            target.tls,
            Tls::Verified {
                roots: Roots::System
            }
        );
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = format!("postgres://db.example/salesbot?sslmode={mode}&application_name=x");
            let target = DatabaseTarget::parse(&url).unwrap();
            assert_eq!(target.config.get_ssl_mode(), SslMode::Require, "{mode}");
            assert_eq!(target.config.get_application_name(), Some("x"));
        }
        let off = DatabaseTarget::parse("postgres://127.0.0.1/s?sslmode=disable").unwrap();
        assert_eq!(
            (off.config.get_ssl_mode(), off.tls),
            (SslMode::Disable, Tls::Off)
        );
    }

    #[test]
    fn a_bad_url_is_refused_without_repeating_it() {
        for (url, says) in [
            ("mysql://u:hunter2@h/db", "must be a PostgreSQL URL"),
            (
                "postgres://u:hunter2@h/db?sslmode=sometimes",
                "sslmode=sometimes",
            ),
            ("postgres://u:hunter2@h/db?colour=blue", "colour"),
            (
                "postgres://u:hunter2@h/db?sslmode=disable&sslrootcert=/ca.pem",
                "sslmode=disable",
            ),
            (
                "postgres://u:hunter2@h/db?sslrootcert=/nonexistent/ca.pem",
                "/nonexistent/ca.pem",
            ),
        ] {
            let reason = DatabaseTarget::parse(url).unwrap_err();
            assert!(reason.contains(says), "{url}: {reason}");
            assert!(!reason.contains("hunter2"), "{reason}");
        }
        let target = DatabaseTarget::parse("postgres://u:hunter2@h/db").unwrap();
        assert!(!format!("{target:?}").contains("hunter2"));
    }

    #[test]
    fn sslrootcert_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let url = format!("postgres://h/db?sslrootcert={}", path.display());
        let reason = DatabaseTarget::parse(&url).unwrap_err();
        assert!(reason.contains("holds no certificate"), "{reason}");
    }
}
