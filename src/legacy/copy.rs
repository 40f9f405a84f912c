//! The original's `facebook/` tree copied into ours: each conversation merged into ours
//! (deduplicated, in time order, written atomically, its attachments owed a download), each
//! page's metadata written without tokens where we have none yet, and the files that do not
//! parse copied aside.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::ImportError;
use super::report::Report;
use super::tree::{Aside, LegacyConversation, LegacyPageDir, LegacyTree};
use crate::domain::PageId;
use crate::state::AppState;
use crate::store::MessagingEvent;

/// Where files that do not parse are kept, inside DATA_DIR.
const ASIDE: &str = ".salesbot/legacy-aside";

pub async fn tree(
    app: &AppState,
    tree: &LegacyTree,
    root: &Path,
    dry_run: bool,
    report: &mut Report,
) -> Result<(), ImportError> {
    for dir in &tree.pages {
        page(app, dir, dry_run, report).await?;
    }
    let aside_root = app.config.storage.data_dir.join(ASIDE);
    report.aside_folder = aside_root.display().to_string();
    for file in &tree.aside {
        if !dry_run {
            keep_aside(root, &aside_root, file).await?;
        }
        tracing::warn!(file = %file.path.display(), reason = %file.reason, "legacy file kept aside");
        report
            .kept_aside
            .push((file.path.display().to_string(), file.reason.clone()));
    }
    Ok(())
}

async fn page(
    app: &AppState,
    dir: &LegacyPageDir,
    dry_run: bool,
    report: &mut Report,
) -> Result<(), ImportError> {
    if let Some(entry) = &dir.metadata
        && app.metadata.read(&dir.page).await?.is_none()
    {
        if !dry_run {
            // Written through the same filter as Meta's answers: the tokens stay out.
            app.metadata.write(&dir.page, entry).await?;
        }
        report.metadata_written += 1;
    }
    for conversation in &dir.conversations {
        let new = merge(app, &dir.page, conversation, dry_run).await?;
        if new > 0 {
            report.conversations += 1;
            report.messages += new;
            report.duplicates_removed += conversation.duplicates;
        }
    }
    Ok(())
}

/// How many of the conversation's events are new here (and, unless a dry run, now stored).
async fn merge(
    app: &AppState,
    page: &PageId,
    conversation: &LegacyConversation,
    dry_run: bool,
) -> Result<usize, ImportError> {
    let customer = &conversation.customer;
    if dry_run {
        let known: HashSet<[u8; 16]> = app
            .conversations
            .read(page, customer)
            .await?
            .iter()
            .map(|event| MessagingEvent::from(event).key_bytes())
            .collect();
        return Ok(conversation
            .events
            .iter()
            .filter(|e| !known.contains(&e.key_bytes()))
            .count());
    }
    let events = conversation.events.clone();
    let downloader = app.attachments.as_ref();
    let new = crate::attachments::add_owing(
        app.conversations.as_ref(),
        downloader,
        page,
        customer,
        events,
    )
    .await?;
    Ok(new)
}

/// Copies a file that does not parse to `aside_root`, under its path in the legacy folder;
/// one copied before (the same bytes) is left.
async fn keep_aside(root: &Path, aside_root: &Path, file: &Aside) -> Result<(), ImportError> {
    let from = root.join(&file.path);
    let to = aside_root.join(&file.path);
    tokio::task::spawn_blocking(move || {
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |e: std::io::Error| ImportError::Io {
                path,
                detail: e.to_string(),
            }
        };
        let bytes = std::fs::read(&from).map_err(io(&from))?;
        if std::fs::read(&to).is_ok_and(|there| there == bytes) {
            return Ok(());
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(&to))?;
        }
        std::fs::write(&to, &bytes).map_err(io(&to))
    })
    .await
    .map_err(crate::store::StoreError::from)?
}
