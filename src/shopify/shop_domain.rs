//! `ShopDomain`: a shop host that can only ever be `<name>.myshopify.com`.
//!
//! The original sent the app's client secret to whatever host the `shop` parameter named; a
//! value of this type is the only thing from which a Shopify URL is built.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid shop: expected <name>.myshopify.com with letters, digits and hyphens")]
pub struct InvalidShop;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShopDomain(String);

const SUFFIX: &str = ".myshopify.com";

impl ShopDomain {
    /// Accepts `name` or `name.myshopify.com` (any case); anything else is refused.
    pub fn parse(raw: &str) -> Result<ShopDomain, InvalidShop> {
        let lower = raw.trim().to_ascii_lowercase();
        let host = if lower.ends_with(SUFFIX) {
            lower
        } else {
            format!("{lower}{SUFFIX}")
        };
        let name = &host[..host.len() - SUFFIX.len()];
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && name.len() <= 63;
        if valid {
            Ok(ShopDomain(host))
        } else {
            Err(InvalidShop)
        }
    }

    /// `demo-store.myshopify.com`
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shop in token-store keys: `.` → `_` (`demo-store_myshopify_com`).
    pub fn key(&self) -> String {
        self.0.replace('.', "_")
    }

    /// Back from [`Self::key`] (a shop's name has no `_` or `.`, so it is not ambiguous).
    pub fn from_key(key: &str) -> Option<ShopDomain> {
        let name = key.strip_suffix("_myshopify_com")?;
        ShopDomain::parse(name).ok()
    }
}

impl fmt::Display for ShopDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hosts_are_accepted_and_normalised() {
        for raw in [
            "demo-store",
            "Demo-Store",
            "demo-store.myshopify.com",
            "DEMO-STORE.MYSHOPIFY.COM",
            "a1",
        ] {
            let shop = ShopDomain::parse(raw).unwrap();
            assert!(shop.as_str().ends_with(".myshopify.com"), "{raw}");
        }
        let shop = ShopDomain::parse("demo-store").unwrap();
        assert_eq!(shop.as_str(), "demo-store.myshopify.com");
        assert_eq!(shop.key(), "demo-store_myshopify_com");
    }

    #[test]
    fn foreign_hosts_are_refused() {
        for raw in [
            "evil.com",
            "a.myshopify.com.evil.com",
            "127.0.0.1:1234",
            "../x",
            "a/b.myshopify.com",
            "-start.myshopify.com",
            ".myshopify.com",
            "",
            "a b",
            "shop.myshopify.com/",
            "shop.myshopify.com:443",
            "user@shop.myshopify.com",
            "sub.shop.myshopify.com",
            "ünicode",
        ] {
            assert_eq!(ShopDomain::parse(raw), Err(InvalidShop), "{raw:?}");
        }
    }
}
