//! The daily sweep that keeps every shop's Shopify tokens alive
//! ([`ShopifyTokens::refresh_expiring`]): a minute after start, then every 24 hours. With
//! several replicas one of them sweeps per UTC day (a claimed run, as the poll's are).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::credentials::ShopifyTokens;
use crate::store::{PollStateStore, unix_now};

const FIRST: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_secs(24 * 3600);

/// The run named for `now`'s UTC day; negative, so it never meets a poll's (cron seconds).
pub fn day_run(now: i64) -> i64 {
    -(now.div_euclid(86_400) + 1)
}

pub async fn run(tokens: ShopifyTokens, runs: PollStateStore, stop: CancellationToken) {
    let mut wait = FIRST;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = EVERY;
        match runs.claim_run(day_run(unix_now())).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("Shopify token sweep done today elsewhere");
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot claim the Shopify token sweep; trying in an hour");
                wait = Duration::from_secs(3600);
                continue;
            }
        }
        sweep(&tokens).await;
    }
}

/// One sweep now, reported in the log.
pub async fn sweep(tokens: &ShopifyTokens) {
    match tokens.refresh_expiring(unix_now()).await {
        Ok(report) => {
            for (shop, reason) in &report.failed {
                tracing::error!(shop = %shop, reason = %reason, "Shopify token could not be refreshed; the merchant must connect the shop again");
            }
            tracing::info!(
                shops = report.shops,
                refreshed = report.refreshed,
                failed = report.failed.len(),
                "Shopify token sweep finished"
            );
        }
        Err(err) => tracing::error!(error = %err, "Shopify token sweep failed; next one tomorrow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_per_utc_day_never_a_cron_second() {
        let day = 20_425 * 86_400;
        assert_eq!(day_run(day), day_run(day + 86_399));
        assert_ne!(day_run(day), day_run(day + 86_400));
        assert!(day_run(0) < 0 && day_run(day) < 0);
    }
}
