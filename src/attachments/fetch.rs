//! One attachment download, safely: only `ATTACHMENT_HOSTS`, never a private or loopback
//! address unless the entry names that origin exactly, redirects only onto allowed hosts, at
//! most `ATTACHMENT_MAX_BYTES`, bounded in time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::config::{AllowedHost, AttachmentConfig};

/// Why a download did not succeed; `permanent` when trying again cannot help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub permanent: bool,
    pub reason: String,
}

impl FetchError {
    fn permanent(reason: impl Into<String>) -> FetchError {
        FetchError {
            permanent: true,
            reason: reason.into(),
        }
    }

    fn transient(reason: impl Into<String>) -> FetchError {
        FetchError {
            permanent: false,
            reason: reason.into(),
        }
    }
}

/// The bytes and what the server said they are.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    hosts: Arc<Vec<AllowedHost>>,
    max_bytes: u64,
}

impl Fetcher {
    pub fn new(config: &AttachmentConfig) -> Fetcher {
        let hosts = Arc::new(config.hosts.clone());
        let redirects = Arc::clone(&hosts);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if allowed(&redirects, attempt.url()) {
                    attempt.follow()
                } else {
                    attempt.error("redirected off the allowed hosts")
                }
            }))
            .dns_resolver(Arc::new(PublicOnly {
                hosts: Arc::clone(&hosts),
            }))
            .user_agent(concat!("salesbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with these settings always builds");
        Fetcher {
            client,
            hosts,
            max_bytes: config.max_bytes,
        }
    }

    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        let url = Url::parse(url).map_err(|_| FetchError::permanent("not a URL"))?;
        if !allowed(&self.hosts, &url) {
            return Err(FetchError::permanent(format!(
                "{} is not in ATTACHMENT_HOSTS",
                url.host_str().unwrap_or("a URL without a host")
            )));
        }
        let mut response = self.client.get(url).send().await.map_err(transport)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let reason = format!("HTTP {status}");
            // Meta's expired or withdrawn links answer 403/404/410 and stay that way.
            return Err(match status {
                408 | 429 | 500.. => FetchError::transient(reason),
                _ => FetchError::permanent(reason),
            });
        }
        let too_large = || {
            FetchError::permanent(format!(
                "larger than ATTACHMENT_MAX_BYTES ({} bytes)",
                self.max_bytes
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes)
        {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if (bytes.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            bytes,
            content_type,
        })
    }
}

fn allowed(hosts: &[AllowedHost], url: &Url) -> bool {
    hosts.iter().any(|host| host.allows(url))
}

/// A failure without the URL (a signed link is a credential of sorts).
fn transport(err: reqwest::Error) -> FetchError {
    let refused_redirect = err.is_redirect();
    let text = crate::outbound::describe(err);
    match refused_redirect {
        true => FetchError::permanent(text),
        false => FetchError::transient(text),
    }
}

/// Resolves names to public addresses only, so an allowed domain that points inside (by
/// mistake, or by a DNS answer made to) cannot reach this machine or its network. A host
/// named exactly by an origin entry resolves as it is.
#[derive(Debug)]
struct PublicOnly {
    hosts: Arc<Vec<AllowedHost>>,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let explicit = self.hosts.iter().any(|host| {
            matches!(host, AllowedHost::Origin(url::Origin::Tuple(_, named, _))
                if named.to_string().eq_ignore_ascii_case(name.as_str()))
        });
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|addr| explicit || is_public(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{} has no public address", name.as_str()).into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// Not this machine, not a private, shared, link-local, multicast or reserved network.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["157.240.1.35", "31.13.64.1", "2a03:2880:f10c::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
