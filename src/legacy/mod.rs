//! `salesbot import-legacy`: moving in from the Python original.
//!
//! Everything of the original is read and opened first ([`stores`], [`tree`]); a row that does
//! not decrypt stops the import there, naming it, with nothing written. Then shops, pages and
//! sessions join our token stores ([`connect`]) and the `facebook/` tree is copied into ours
//! ([`copy`]): conversations deduplicated and in our format, metadata without tokens, files
//! that do not parse kept aside. What is here already is left as it is, so a second run
//! changes nothing; `--dry-run` says what a run would do and writes nothing.

mod connect;
mod copy;
mod report;
mod sealed;
mod stores;
mod tree;

use std::path::PathBuf;

use secrecy::SecretString;

pub use report::Report;
pub use sealed::LegacyKey;

use crate::state::AppState;
use crate::store::StoreError;

/// What to import, from the command line.
#[derive(Debug)]
pub struct ImportOptions {
    /// The original's `tokens.db`.
    pub tokens_db: PathBuf,
    /// The original's `sessions.db`: its sessions younger than an hour are adopted.
    pub sessions_db: Option<PathBuf>,
    /// The folder holding the original's `facebook/` tree.
    pub data_dir: Option<PathBuf>,
    pub dry_run: bool,
    /// The original's `STATE_TOKEN_SECRET`, from which its key is derived.
    pub secret: SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "row {row} of {} does not decrypt with LEGACY_STATE_TOKEN_SECRET: it is not the \
         original's STATE_TOKEN_SECRET, or the row is damaged. Nothing was imported",
        db.display()
    )]
    Undecryptable { db: PathBuf, row: String },
    #[error("row {row} of {} {problem}. Nothing was imported", db.display())]
    Row {
        db: PathBuf,
        row: String,
        problem: String,
    },
    #[error("{}: no such file", .0.display())]
    Missing(PathBuf),
    #[error("cannot read {}: {detail}", db.display())]
    Database { db: PathBuf, detail: String },
    #[error("no facebook/ folder in the legacy data folder ({})", .0.display())]
    NoTree(PathBuf),
    #[error(
        "the legacy data folder is DATA_DIR itself ({}): the original's tree is only read, \
         so it must be elsewhere (move it, or point DATA_DIR at a new folder)",
        .0.display()
    )]
    SameFolder(PathBuf),
    #[error("{}: {detail}", path.display())]
    Io { path: PathBuf, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    /// A problem with what was given (the secret, a path), rather than with the run.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ImportError::Undecryptable { .. }
                | ImportError::SameFolder(_)
                | ImportError::Missing(_)
                | ImportError::NoTree(_)
        )
    }
}

/// Imports the original's stores and tree into `app`'s.
pub async fn import(app: &AppState, options: &ImportOptions) -> Result<Report, ImportError> {
    let legacy = read(app, options).await?;
    let mut report = Report {
        dry_run: options.dry_run,
        user_token_left: legacy.tokens.user_token,
        unknown_rows: legacy.tokens.unknown.clone(),
        ..Report::default()
    };
    let merchants = connect::shops(app, &legacy.tokens.shops, options.dry_run, &mut report).await?;
    connect::pages(
        app,
        &legacy.tokens.pages,
        &merchants,
        options.dry_run,
        &mut report,
    )
    .await?;
    connect::sessions(
        app,
        &legacy.sessions,
        &merchants,
        options.dry_run,
        &mut report,
    )
    .await?;
    if let Some((tree, root)) = &legacy.tree {
        copy::tree(app, tree, root, options.dry_run, &mut report).await?;
    }
    if !options.dry_run
        && let Some(publisher) = &app.publisher
    {
        publisher.publish_all().await?;
    }
    Ok(report)
}

/// Everything of the original, opened.
struct Legacy {
    tokens: stores::LegacyTokens,
    sessions: Vec<stores::LegacySession>,
    tree: Option<(tree::LegacyTree, PathBuf)>,
}

async fn read(app: &AppState, options: &ImportOptions) -> Result<Legacy, ImportError> {
    let data_dir = app.config.storage.data_dir.clone();
    let tokens_db = options.tokens_db.clone();
    let sessions_db = options.sessions_db.clone();
    let legacy_dir = options.data_dir.clone();
    let secret = options.secret.clone();
    // PBKDF2's 100 000 rounds and the reading are blocking work.
    tokio::task::spawn_blocking(move || {
        let key = LegacyKey::derive(&secret);
        let tokens = stores::read_tokens(&tokens_db, &key)?;
        let sessions = match &sessions_db {
            Some(path) => stores::read_sessions(path, &key)?,
            None => Vec::new(),
        };
        let tree = match legacy_dir {
            Some(root) => {
                if same_folder(&root, &data_dir) {
                    return Err(ImportError::SameFolder(root));
                }
                Some((tree::read(&root)?, root))
            }
            None => None,
        };
        Ok(Legacy {
            tokens,
            sessions,
            tree,
        })
    })
    .await
    .map_err(StoreError::from)?
}

fn same_folder(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
