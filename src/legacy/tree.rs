//! Reading the original's `facebook/` tree (only read, never changed):
//!
//! ```text
//! facebook/<page_id>/page_metadata.json                 what /me/accounts answered: every
//!                                                       page of the user, tokens included
//! facebook/<page_id>/conversations/<sender_id>.json     a JSON array of messaging events,
//!                                                       redeliveries stored twice
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ImportError;
use crate::domain::{PageId, SenderId};
use crate::store::MessagingEvent;

/// What the tree holds, parsed.
#[derive(Debug, Default)]
pub struct LegacyTree {
    pub pages: Vec<LegacyPageDir>,
    /// Files that do not parse: kept aside and reported, never deleted.
    pub aside: Vec<Aside>,
}

#[derive(Debug)]
pub struct LegacyPageDir {
    pub page: PageId,
    /// The page's own entry of its metadata file (the file lists every page of the user).
    pub metadata: Option<Value>,
    pub conversations: Vec<LegacyConversation>,
}

#[derive(Debug)]
pub struct LegacyConversation {
    pub customer: SenderId,
    /// Each event once, in the file's order.
    pub events: Vec<MessagingEvent>,
    /// Events stored more than once by the original.
    pub duplicates: usize,
}

/// A file left out, with why; `path` is relative to the legacy data folder.
#[derive(Debug)]
pub struct Aside {
    pub path: PathBuf,
    pub reason: String,
}

pub fn read(root: &Path) -> Result<LegacyTree, ImportError> {
    let facebook = root.join("facebook");
    if !facebook.is_dir() {
        return Err(ImportError::NoTree(facebook));
    }
    let mut tree = LegacyTree::default();
    for (name, path) in entries(&facebook)? {
        let relative = Path::new("facebook").join(&name);
        match PageId::parse(&name) {
            Ok(page) if path.is_dir() => {
                let dir = read_page(page, &path, &relative, &mut tree.aside)?;
                tree.pages.push(dir);
            }
            _ if path.is_file() => tree.aside.push(Aside {
                path: relative,
                reason: "not a page folder".into(),
            }),
            _ => tracing::warn!(folder = %relative.display(), "not a page folder; left alone"),
        }
    }
    Ok(tree)
}

fn read_page(
    page: PageId,
    dir: &Path,
    relative: &Path,
    aside: &mut Vec<Aside>,
) -> Result<LegacyPageDir, ImportError> {
    let mut found = LegacyPageDir {
        metadata: None,
        conversations: Vec::new(),
        page,
    };
    let metadata_path = dir.join("page_metadata.json");
    if metadata_path.is_file() {
        match parse(&metadata_path).map(|doc| own_entry(&doc, &found.page)) {
            Ok(Some(entry)) => found.metadata = Some(entry),
            Ok(None) => aside.push(Aside {
                path: relative.join("page_metadata.json"),
                reason: "does not describe this page".into(),
            }),
            Err(reason) => aside.push(Aside {
                path: relative.join("page_metadata.json"),
                reason,
            }),
        }
    }
    let conversations = dir.join("conversations");
    if !conversations.is_dir() {
        return Ok(found);
    }
    for (name, path) in entries(&conversations)? {
        let relative = relative.join("conversations").join(&name);
        let customer = name
            .strip_suffix(".json")
            .and_then(|id| SenderId::parse(id).ok());
        let parsed = match customer {
            Some(customer) => parse(&path).and_then(|doc| conversation(customer, &doc)),
            None => Err("not named <sender_id>.json".into()),
        };
        match parsed {
            Ok(conversation) => found.conversations.push(conversation),
            Err(reason) => aside.push(Aside {
                path: relative,
                reason,
            }),
        }
    }
    Ok(found)
}

/// The page's entry: `{"data": [...]}` as `/me/accounts` answered (the original wrote it so),
/// or a document of the page itself.
fn own_entry(doc: &Value, page: &PageId) -> Option<Value> {
    let is_page = |entry: &&Value| entry.get("id").and_then(Value::as_str) == Some(page.as_str());
    doc.get("data")
        .and_then(Value::as_array)
        .and_then(|entries| entries.iter().find(is_page))
        .or_else(|| Some(doc).filter(is_page))
        .cloned()
}

fn conversation(customer: SenderId, doc: &Value) -> Result<LegacyConversation, String> {
    let items = doc
        .as_array()
        .ok_or_else(|| "not a JSON array of events".to_string())?;
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for item in items {
        if !item.is_object() {
            return Err("holds something other than events".into());
        }
        let event = MessagingEvent::from(item);
        if seen.insert(event.key_bytes()) {
            events.push(event);
        }
    }
    Ok(LegacyConversation {
        duplicates: items.len() - events.len(),
        customer,
        events,
    })
}

fn parse(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("is not JSON: {e}"))
}

/// A folder's entries by name, sorted (so reports read the same each run).
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, ImportError> {
    let read = std::fs::read_dir(dir).map_err(|e| ImportError::Io {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    })?;
    let mut found: Vec<(String, PathBuf)> = read
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    found.sort();
    Ok(found)
}
