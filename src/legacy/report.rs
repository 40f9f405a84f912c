//! What an import did, or would do (`--dry-run`): printed at the end, one line a subject.

use std::fmt;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub shops_imported: usize,
    /// Shops whose token this install already holds (connected here, or imported before).
    pub shops_already_here: usize,
    pub pages_imported: usize,
    pub pages_already_here: usize,
    /// Pages whose token Meta refused: imported, marked as needing re-authorisation.
    pub needs_reauth: Vec<String>,
    /// Pages whose token could not be checked (Meta unreachable): imported as they were.
    pub unchecked: Vec<String>,
    /// Page tokens without the owner UUID a page needs: not imported.
    pub pages_without_owner: Vec<String>,
    /// Conversations that received messages, and how many.
    pub conversations: usize,
    pub messages: usize,
    /// Events the original had stored twice (or more) in those conversations.
    pub duplicates_removed: usize,
    pub metadata_written: usize,
    /// Files that do not parse, with why: copied aside (`aside_folder`), never deleted.
    pub kept_aside: Vec<(String, String)>,
    pub aside_folder: String,
    pub sessions_adopted: usize,
    pub sessions_expired: usize,
    /// The original's one global Facebook user token: reported, not imported.
    pub user_token_left: bool,
    pub unknown_rows: Vec<String>,
}

impl Report {
    /// Whether the run changed (or would change) anything.
    pub fn changes(&self) -> bool {
        self.shops_imported
            + self.pages_imported
            + self.messages
            + self.metadata_written
            + self.sessions_adopted
            > 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb =
            |done: &'static str, would: &'static str| if self.dry_run { would } else { done };
        let imported = verb("imported", "would be imported");
        if self.dry_run {
            writeln!(f, "dry run: nothing was written")?;
        }
        writeln!(
            f,
            "shops: {} {imported}, {} already here",
            self.shops_imported, self.shops_already_here
        )?;
        writeln!(
            f,
            "pages: {} {imported}, {} already here",
            self.pages_imported, self.pages_already_here
        )?;
        if self.shops_imported > 0 {
            writeln!(
                f,
                "  the original's Shopify tokens never expire, and Shopify stops such tokens for \
                 public apps on 2027-01-01: have these merchants connect their store again before"
            )?;
        }
        list(
            f,
            "pages needing re-authorisation (Meta refused their token; the merchant connects them again)",
            &self.needs_reauth,
        )?;
        list(
            f,
            "pages whose token could not be checked (Meta unreachable)",
            &self.unchecked,
        )?;
        list(
            f,
            "page tokens without an owner UUID, not imported (connect them again)",
            &self.pages_without_owner,
        )?;
        writeln!(
            f,
            "conversations: {} {}, {} messages, {} duplicates removed",
            self.conversations,
            verb("with new messages", "would get new messages"),
            self.messages,
            self.duplicates_removed
        )?;
        writeln!(
            f,
            "page metadata: {} {}",
            self.metadata_written,
            verb(
                "written (without tokens)",
                "would be written (without tokens)"
            )
        )?;
        if self.kept_aside.is_empty() {
            writeln!(f, "files kept aside: none")?;
        } else {
            writeln!(
                f,
                "files kept aside ({}, {} {}; the legacy tree is unchanged):",
                self.kept_aside.len(),
                verb("copied to", "would be copied to"),
                self.aside_folder
            )?;
            for (path, reason) in &self.kept_aside {
                writeln!(f, "  {path}: {reason}")?;
            }
        }
        if self.sessions_adopted + self.sessions_expired > 0 {
            writeln!(
                f,
                "sessions: {} {}, {} older than an hour left (their merchants log in again)",
                self.sessions_adopted,
                verb("adopted", "would be adopted"),
                self.sessions_expired
            )?;
        }
        if self.user_token_left {
            writeln!(
                f,
                "FACEBOOK_USER_ACCESS_TOKEN: not imported (the original kept one for everybody; ours are per merchant)"
            )?;
        }
        list(f, "rows of no known kind, not imported", &self.unknown_rows)?;
        write!(
            f,
            "{}",
            match (self.changes(), self.dry_run) {
                (false, _) => "nothing to change: everything is here already",
                (true, true) => "run again without --dry-run to import",
                (true, false) => "done",
            }
        )
    }
}

fn list(f: &mut fmt::Formatter<'_>, title: &str, items: &[String]) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    writeln!(f, "{title}: {}", items.join(", "))
}
