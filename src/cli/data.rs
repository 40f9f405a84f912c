//! The subcommands that change stored data beside (or without) the server: key rotation,
//! moving between backends, erasing a customer, moving in from the original.

use std::process::ExitCode;

use crate::config::Config;
use crate::store::backend::Role;
use crate::telemetry;

/// `salesbot rekey`: every token row re-sealed under TOKEN_ENCRYPTION_KEY.
pub(super) async fn rekey(config: Config) -> Result<ExitCode, String> {
    // Not through the application's start, which refuses rows it cannot open: here they are
    // to be listed.
    let metrics = crate::telemetry::metrics::Metrics::new();
    let stores = crate::store::backend::open(&config.storage, Role::Beside, &metrics)
        .await
        .map_err(|e| e.to_string())?;
    let report = stores.tokens.rekey().await.map_err(|e| e.to_string())?;
    println!(
        "re-sealed {} under TOKEN_ENCRYPTION_KEY",
        plural_rows(report.resealed)
    );
    if report.unopened.is_empty() {
        println!(
            "every row opens with TOKEN_ENCRYPTION_KEY alone: TOKEN_ENCRYPTION_KEY_PREVIOUS can go"
        );
        return Ok(ExitCode::SUCCESS);
    }
    for key in &report.unopened {
        eprintln!("salesbot: row {key}: no configured key opens it; left as it is");
    }
    eprintln!(
        "salesbot: {} not re-sealed: add the key they were sealed with to TOKEN_ENCRYPTION_KEY_PREVIOUS and run rekey again",
        plural_rows(report.unopened.len())
    );
    Ok(ExitCode::FAILURE)
}

fn plural_rows(n: usize) -> String {
    match n {
        1 => "1 row".into(),
        n => format!("{n} rows"),
    }
}

/// `salesbot erase`: one customer erased, then what went.
pub(super) async fn erase(
    config: Config,
    page: &crate::domain::PageId,
    customer: &crate::domain::SenderId,
) -> Result<ExitCode, String> {
    let state = crate::app::build_state(config)
        .await
        .map_err(|e| e.to_string())?;
    let erased = crate::erasure::customer(&state, page, customer)
        .await
        .map_err(|e| e.to_string())?;
    if erased == crate::erasure::Erased::default() {
        println!("nothing was stored of customer {customer} of page {page}");
    } else {
        println!(
            "erased customer {customer} of page {page}: {} events, {} attachment files, {} download entries",
            erased.events, erased.attachment_files, erased.downloads
        );
    }
    println!(
        "the erasure is recorded: polls will not store again what Meta still serves from before now"
    );
    Ok(ExitCode::SUCCESS)
}

/// `salesbot import-legacy`: the import, then its report; exit 2 for a wrong secret.
pub(super) async fn import_legacy(
    config: Config,
    options: crate::legacy::ImportOptions,
) -> Result<ExitCode, String> {
    let state = crate::app::build_state(config)
        .await
        .map_err(|e| e.to_string())?;
    match crate::legacy::import(&state, &options).await {
        Ok(report) => {
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) if err.is_usage() => {
            telemetry::flush();
            eprintln!("salesbot: {err}");
            Ok(ExitCode::from(2))
        }
        Err(err) => Err(err.to_string()),
    }
}

/// `salesbot migrate`: the move, then what it did.
pub(super) async fn migrate(
    config: Config,
    to: crate::migrate::Direction,
) -> Result<ExitCode, String> {
    let report = crate::migrate::run(&config, to)
        .await
        .map_err(|e| e.to_string())?;
    println!("migrated: {report}");
    Ok(ExitCode::SUCCESS)
}
