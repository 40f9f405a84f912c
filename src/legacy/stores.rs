//! Reading the original's `tokens.db` and `sessions.db` (only read: opened read-only), every
//! value opened with its key before anything is imported, so a wrong secret writes nothing.
//!
//! Their rows: `tokens(key, value, type)` with `SHOPIFY_ACCESS_TOKEN_<shop with . as _>`,
//! `USER_UUID_<same>`, `FACEBOOK_USER_ACCESS_TOKEN`, `FACEBOOK_ACCESS_TOKEN_<page>`,
//! `PAGE_UUID_<page>`; `sessions(session_id, uuid, created_at)`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::ImportError;
use super::sealed::LegacyKey;
use crate::domain::PageId;
use crate::shopify::ShopDomain;

/// A shop the original connected.
#[derive(Debug)]
pub struct LegacyShop {
    pub shop: ShopDomain,
    pub token: Option<SecretString>,
    pub merchant: Option<Uuid>,
}

/// A page the original connected.
#[derive(Debug)]
pub struct LegacyPage {
    pub page: PageId,
    pub token: Option<SecretString>,
    pub owner: Option<Uuid>,
}

/// Everything of `tokens.db`, opened.
#[derive(Debug, Default)]
pub struct LegacyTokens {
    pub shops: Vec<LegacyShop>,
    pub pages: Vec<LegacyPage>,
    /// The original's one global user token was there (it is not imported: ours are per user).
    pub user_token: bool,
    /// Rows of no known kind (named in the report, not imported).
    pub unknown: Vec<String>,
}

/// One browser session of the original.
#[derive(Debug)]
pub struct LegacySession {
    pub cookie_value: SecretString,
    pub merchant: Uuid,
    pub created_at: i64,
}

pub fn read_tokens(path: &Path, key: &LegacyKey) -> Result<LegacyTokens, ImportError> {
    let rows = rows(path, "SELECT key, value FROM tokens ORDER BY key")?;
    let mut shops: BTreeMap<String, LegacyShop> = BTreeMap::new();
    let mut pages: BTreeMap<String, LegacyPage> = BTreeMap::new();
    let mut tokens = LegacyTokens::default();
    for (name, sealed) in rows {
        let value = key
            .open(&sealed)
            .ok_or_else(|| undecryptable(path, &name))?;
        let uuid = || uuid_of(path, &name, &value);
        if let Some(shop_key) = name.strip_prefix("SHOPIFY_ACCESS_TOKEN_") {
            shop(&mut shops, shop_key, path, &name)?.token = Some(value);
        } else if let Some(shop_key) = name.strip_prefix("USER_UUID_") {
            shop(&mut shops, shop_key, path, &name)?.merchant = Some(uuid()?);
        } else if name == "FACEBOOK_USER_ACCESS_TOKEN" {
            tokens.user_token = true;
        } else if let Some(page_id) = name.strip_prefix("FACEBOOK_ACCESS_TOKEN_") {
            page(&mut pages, page_id, path, &name)?.token = Some(value);
        } else if let Some(page_id) = name.strip_prefix("PAGE_UUID_") {
            page(&mut pages, page_id, path, &name)?.owner = Some(uuid()?);
        } else {
            tokens.unknown.push(name);
        }
    }
    tokens.shops = shops.into_values().collect();
    tokens.pages = pages.into_values().collect();
    Ok(tokens)
}

pub fn read_sessions(path: &Path, key: &LegacyKey) -> Result<Vec<LegacySession>, ImportError> {
    let connection = open(path)?;
    let mut select = connection
        .prepare("SELECT session_id, uuid, created_at FROM sessions ORDER BY session_id")
        .map_err(sqlite(path))?;
    let rows: Vec<(String, String, i64)> = select
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .and_then(|rows| rows.collect())
        .map_err(sqlite(path))?;
    rows.into_iter()
        .map(|(id, sealed, created_at)| {
            // Named by position, not by id: a session id is a browser's credential.
            let name = format!("session created at {created_at}");
            let value = key
                .open(&sealed)
                .ok_or_else(|| undecryptable(path, &name))?;
            Ok(LegacySession {
                cookie_value: SecretString::from(id),
                merchant: uuid_of(path, &name, &value)?,
                created_at,
            })
        })
        .collect()
}

fn shop<'a>(
    shops: &'a mut BTreeMap<String, LegacyShop>,
    shop_key: &str,
    path: &Path,
    row: &str,
) -> Result<&'a mut LegacyShop, ImportError> {
    // The original wrote the shop's host with `.` as `_`; shop names have no `_` of their own.
    let shop = ShopDomain::from_key(shop_key).ok_or_else(|| ImportError::Row {
        db: path.to_path_buf(),
        row: row.to_string(),
        problem: "does not name a *.myshopify.com shop".into(),
    })?;
    Ok(shops
        .entry(shop.as_str().to_string())
        .or_insert_with(|| LegacyShop {
            shop,
            token: None,
            merchant: None,
        }))
}

fn page<'a>(
    pages: &'a mut BTreeMap<String, LegacyPage>,
    page_id: &str,
    path: &Path,
    row: &str,
) -> Result<&'a mut LegacyPage, ImportError> {
    let page = PageId::parse(page_id).map_err(|e| ImportError::Row {
        db: path.to_path_buf(),
        row: row.to_string(),
        problem: e.to_string(),
    })?;
    Ok(pages
        .entry(page.as_str().to_string())
        .or_insert_with(|| LegacyPage {
            page,
            token: None,
            owner: None,
        }))
}

fn uuid_of(path: &Path, row: &str, value: &SecretString) -> Result<Uuid, ImportError> {
    Uuid::parse_str(value.expose_secret().trim()).map_err(|_| ImportError::Row {
        db: path.to_path_buf(),
        row: row.to_string(),
        problem: "does not hold a UUID".into(),
    })
}

fn undecryptable(path: &Path, row: &str) -> ImportError {
    ImportError::Undecryptable {
        db: path.to_path_buf(),
        row: row.to_string(),
    }
}

fn rows(path: &Path, sql: &str) -> Result<Vec<(String, String)>, ImportError> {
    let connection = open(path)?;
    let mut select = connection.prepare(sql).map_err(sqlite(path))?;
    select
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(sqlite(path))
}

/// Read-only, and never created: a mistyped path is an error, not a new empty database.
fn open(path: &Path) -> Result<Connection, ImportError> {
    if !path.is_file() {
        return Err(ImportError::Missing(path.to_path_buf()));
    }
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> ImportError + '_ {
    move |err| ImportError::Database {
        db: PathBuf::from(path),
        detail: err.to_string(),
    }
}
