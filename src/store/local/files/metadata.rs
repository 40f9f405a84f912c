//! `page_metadata.json`: the page's own public fields in the original's `{"data": [...]}` shape.
//!
//! Only an allow-list of fields is ever written, so a token that Graph returns alongside (as
//! `/me/accounts` does) cannot reach the file, whoever calls this.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::atomic::{ensure_dir, write_atomic};
use crate::store::StoreError;

/// The non-sensitive page fields kept in the file (SPEC 4), also the `fields=` to ask Graph for.
pub const PAGE_FIELDS: [&str; 14] = [
    "id",
    "name",
    "category",
    "category_list",
    "about",
    "website",
    "link",
    "picture",
    "fan_count",
    "verification_status",
    "location",
    "phone",
    "email",
    "created_time",
];

pub(crate) fn document(page_fields: &Value) -> Value {
    let kept: Map<String, Value> = PAGE_FIELDS
        .iter()
        .filter_map(|&field| Some((field.to_string(), page_fields.get(field)?.clone())))
        .collect();
    json!({ "data": [kept] })
}

pub(super) fn write(path: &Path, document: &Value) -> Result<(), StoreError> {
    let dir = path.parent().expect("metadata lives in a page folder");
    ensure_dir(dir)?;
    write_atomic(path, &bytes(document))
}

/// The file's bytes: pretty JSON (a person may read it), the same in every backend.
pub(crate) fn bytes(document: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(document).expect("a Value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_fields_reach_the_document() {
        let page = json!({
            "id": "101", "name": "Demo Page", "category": "Shop",
            "access_token": "EAAB-page-token", "tasks": ["MANAGE"], "fan_count": 3
        });
        let doc = document(&page);
        assert_eq!(
            doc,
            json!({"data": [{"id": "101", "name": "Demo Page", "category": "Shop", "fan_count": 3}]})
        );
        assert!(!doc.to_string().contains("EAAB"));
    }
}
