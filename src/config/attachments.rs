//! Where attachments may be downloaded from (`ATTACHMENT_HOSTS`), parsed at start.

use url::Url;

/// Meta's CDN: Messenger's attachment URLs are on these domains and their subdomains.
pub const META_CDN: &str = "fbcdn.net,fbsbx.com";

/// `ATTACHMENTS`, `ATTACHMENT_HOSTS`, `ATTACHMENT_MAX_BYTES`.
#[derive(Debug, Clone)]
pub struct AttachmentConfig {
    pub enabled: bool,
    pub hosts: Vec<AllowedHost>,
    pub max_bytes: u64,
}

/// One entry of `ATTACHMENT_HOSTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHost {
    /// A domain: https only, the domain itself or any subdomain, public addresses only.
    Domain(String),
    /// Written with a scheme (and port): exactly that origin, plain http included, whatever
    /// address it has (how the sandbox and tests name a server on 127.0.0.1).
    Origin(url::Origin),
}

impl AllowedHost {
    pub fn parse(entry: &str) -> Result<AllowedHost, String> {
        let entry = entry.trim();
        if entry.contains("://") {
            let url = Url::parse(entry).map_err(|_| format!("`{entry}` is not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(format!("`{entry}` must be an http(s) origin"));
            }
            return Ok(AllowedHost::Origin(url.origin()));
        }
        let domain = entry.trim_start_matches('.').to_ascii_lowercase();
        let valid = !domain.is_empty()
            && domain.contains('.')
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            return Err(format!("`{entry}` is not a domain such as fbcdn.net"));
        }
        Ok(AllowedHost::Domain(domain))
    }

    /// Whether `url` may be fetched under this entry.
    pub fn allows(&self, url: &Url) -> bool {
        match self {
            AllowedHost::Origin(origin) => &url.origin() == origin,
            AllowedHost::Domain(domain) => {
                url.scheme() == "https"
                    && matches!(url.host(), Some(url::Host::Domain(host))
                        if host == domain || host.ends_with(&format!(".{domain}")))
            }
        }
    }
}

/// A comma-separated list of entries.
pub fn parse_hosts(list: &str) -> Result<Vec<AllowedHost>, String> {
    let hosts = list
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(AllowedHost::parse)
        .collect::<Result<Vec<_>, _>>()?;
    match hosts.is_empty() {
        true => Err("lists no host (ATTACHMENTS=off turns downloads off)".into()),
        false => Ok(hosts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &str, url: &str) -> bool {
        let url = Url::parse(url).unwrap();
        parse_hosts(list).unwrap().iter().any(|h| h.allows(&url))
    }

    #[test]
    fn domains_match_themselves_and_subdomains_over_https_only() {
        assert!(allowed(
            META_CDN,
            "https://scontent.xx.fbcdn.net/v/t1/a.jpg?oh=1"
        ));
        assert!(allowed(META_CDN, "https://cdn.fbsbx.com/v/file.pdf"));
        assert!(allowed(META_CDN, "https://fbcdn.net/a"));
        assert!(
            !allowed(META_CDN, "http://scontent.xx.fbcdn.net/a.jpg"),
            "plain http"
        );
        assert!(
            !allowed(META_CDN, "https://evilfbcdn.net/a.jpg"),
            "not a subdomain"
        );
        assert!(!allowed(META_CDN, "https://fbcdn.net.evil.com/a.jpg"));
        assert!(!allowed(META_CDN, "https://127.0.0.1/a.jpg"));
        assert!(!allowed(META_CDN, "file:///etc/passwd"));
    }

    #[test]
    fn an_origin_allows_exactly_that_origin() {
        let list = "fbcdn.net, http://127.0.0.1:8080";
        assert!(allowed(list, "http://127.0.0.1:8080/photo.jpg"));
        assert!(
            !allowed(list, "http://127.0.0.1:8081/photo.jpg"),
            "another port"
        );
        assert!(
            !allowed(list, "https://127.0.0.1:8080/photo.jpg"),
            "another scheme"
        );
        assert!(
            !allowed(list, "http://localhost:8080/photo.jpg"),
            "another host"
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "",
            " , ",
            "ftp://x.example",
            "not a host",
            "localhost",
            "http://",
        ] {
            assert!(parse_hosts(bad).is_err(), "{bad:?}");
        }
    }
}
