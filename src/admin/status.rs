//! What `GET /status` and `salesbot status` show: every shop and page, how their tokens,
//! polls, webhook subscription and attachments stand. Dates, names and counts; never a token.

use serde::Serialize;

use crate::shopify::credentials::ShopStatus;
use crate::state::AppState;
use crate::store::{StoreError, TokenKind, unix_now};

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Unix seconds, as every time below.
    pub generated_at: i64,
    pub next_poll: Option<i64>,
    pub shops: Vec<ShopStatus>,
    pub pages: Vec<PageStatus>,
    /// Attachment downloads still owed (`null` when attachments are off).
    pub attachments_pending: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PageStatus {
    pub id: String,
    pub name: Option<String>,
    pub connected_at: Option<i64>,
    pub last_successful_poll: Option<i64>,
    pub next_poll: Option<i64>,
    /// The webhook subscription as last seen (by the OAuth callback or a poll), and when.
    pub webhook_subscribed: Option<bool>,
    pub subscription_seen_at: Option<i64>,
    /// Why the merchant must connect the page again, if they must.
    pub needs_reauth: Option<String>,
    pub conversations: usize,
    pub messages: usize,
    pub attachments_pending: usize,
}

pub async fn gather(app: &AppState) -> Result<Status, StoreError> {
    let now = unix_now();
    let next_poll = crate::scheduler::next_run(&app.config.poll.schedule, now);
    let records = app.poller.state().all().await?;
    let pending = match &app.attachments {
        Some(downloader) => Some(downloader.pending_by_page().await?),
        None => None,
    };
    let mut pages = Vec::new();
    for key in app.tokens.keys_of_kind(TokenKind::Token).await? {
        let Some(page) = key.page_of_token() else {
            continue;
        };
        let record = records.iter().find(|r| r.page == page.as_str());
        let name = app
            .metadata
            .read(&page)
            .await?
            .and_then(|doc| Some(doc.pointer("/data/0/name")?.as_str()?.to_string()));
        let counts = app.conversations.counts(&page).await?;
        let owed = pending
            .iter()
            .flatten()
            .find(|(id, _)| id == page.as_str())
            .map_or(0, |(_, n)| *n);
        pages.push(PageStatus {
            id: page.to_string(),
            name,
            connected_at: record.and_then(|r| r.connected_at),
            last_successful_poll: record.and_then(|r| r.last_success),
            next_poll,
            webhook_subscribed: record.and_then(|r| r.subscribed),
            subscription_seen_at: record.and_then(|r| r.subscription_seen_at),
            needs_reauth: record.and_then(|r| r.reauth_reason.clone()),
            conversations: counts.conversations,
            messages: counts.messages,
            attachments_pending: owed,
        });
    }
    pages.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Status {
        generated_at: now,
        next_poll,
        shops: app.shopify_tokens.shops(now).await?,
        pages,
        attachments_pending: pending.map(|by_page| by_page.iter().map(|(_, n)| n).sum()),
    })
}

/// `2026-12-03 12:00 UTC`, or `-`.
pub fn when(at: Option<i64>) -> String {
    at.and_then(|at| chrono::DateTime::from_timestamp(at, 0))
        .map_or_else(
            || "-".into(),
            |at| at.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

fn yes_no(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "subscribed",
        Some(false) => "NOT subscribed",
        None => "not seen yet",
    }
}

/// The rows of the pages table, as text cells (shared by the HTML page and the CLI table).
pub fn page_rows(status: &Status) -> Vec<[String; 9]> {
    status
        .pages
        .iter()
        .map(|p| {
            [
                p.id.clone(),
                p.name.clone().unwrap_or_else(|| "-".into()),
                when(p.connected_at),
                when(p.last_successful_poll),
                when(p.next_poll),
                format!(
                    "{} ({})",
                    yes_no(p.webhook_subscribed),
                    when(p.subscription_seen_at)
                ),
                p.needs_reauth
                    .clone()
                    .map_or_else(|| "no".into(), |why| format!("YES: {why}")),
                format!("{} / {}", p.conversations, p.messages),
                p.attachments_pending.to_string(),
            ]
        })
        .collect()
}

pub const PAGE_HEADERS: [&str; 9] = [
    "page",
    "name",
    "connected",
    "last successful poll",
    "next poll",
    "webhook",
    "re-authorisation needed",
    "conversations / messages",
    "attachments pending",
];

pub fn shop_rows(status: &Status) -> Vec<[String; 5]> {
    status
        .shops
        .iter()
        .map(|s| {
            [
                s.shop.clone(),
                when(s.connected_at),
                when(s.access_token_expires_at),
                when(s.refresh_token_expires_at),
                s.needs_reauth
                    .clone()
                    .map_or_else(|| "no".into(), |why| format!("YES: {why}")),
            ]
        })
        .collect()
}

pub const SHOP_HEADERS: [&str; 5] = [
    "shop",
    "connected",
    "access token until",
    "refresh token until",
    "re-authorisation needed",
];

/// Columns padded to their widest cell, for a terminal.
pub fn text_table<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut text = line(headers.to_vec());
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

/// The same tables as HTML, every cell escaped.
pub fn html_table<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> String {
    use crate::http::html::escape;
    let mut html = String::from("<table><thead><tr>");
    for header in headers {
        html.push_str(&format!("<th>{}</th>", escape(header)));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            html.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}
