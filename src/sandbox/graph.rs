//! The sandbox's Graph API: token exchanges, `/me/accounts`, page metadata, `subscribed_apps`
//! and `conversations` with real paging, in the shapes Meta answers with.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::world::{Conversation, Fault, Message, Page, World};

pub(super) struct Request<'a> {
    pub method: &'a str,
    /// Path segments after the version, e.g. `["101", "conversations"]`.
    pub segments: Vec<&'a str>,
    pub query: &'a [(String, String)],
    pub base: &'a str,
}

impl Request<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn offset(&self) -> usize {
        self.param("after")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0)
    }
}

pub(super) fn answer(world: &mut World, request: &Request<'_>) -> Response {
    let token = request
        .param("access_token")
        .unwrap_or_default()
        .to_string();
    let limits = Limits {
        conversations: world.conversations_per_page,
        messages: world.messages_per_page,
        readable: world.readable_messages,
    };
    match (request.method, request.segments.as_slice()) {
        ("GET", ["oauth", "access_token"]) => exchange(request),
        ("GET", ["me", "accounts"]) => accounts(world, request, &token),
        ("GET", [id, "messages"]) => with_page(world, &token, None, |page| {
            let Some(conversation) = page.conversations.iter().find(|c| c.id == *id) else {
                return graph_error(StatusCode::NOT_FOUND, 100, None, "Unsupported get request.");
            };
            messages_page(limits, conversation, request, request.offset())
                .map_or_else(deleted, |v| Json(v).into_response())
        }),
        (method, [page_id, rest @ ..]) => with_page(world, &token, Some(page_id), |page| {
            match (method, rest) {
            ("GET", []) => Json(json!({
                "id": page.id, "name": page.name, "category": page.category, "fan_count": 1280,
                "link": format!("https://www.facebook.com/{}", page.id), "about": "A sandbox page",
            }))
            .into_response(),
            ("GET", ["subscribed_apps"]) => Json(json!({"data": if page.subscribed {
                vec![json!({"id": "1", "name": "salesbot", "subscribed_fields": ["name", "category", "messages"]})]
            } else { vec![] }}))
            .into_response(),
            ("POST", ["subscribed_apps"]) => {
                page.subscribed = true;
                Json(json!({"success": true})).into_response()
            }
            ("GET", ["conversations"]) => Json(conversations(limits, page, request)).into_response(),
            _ => graph_error(StatusCode::BAD_REQUEST, 100, None, "Unsupported request."),
        }
        }),
        _ => graph_error(StatusCode::BAD_REQUEST, 100, None, "Unsupported request."),
    }
}

#[derive(Clone, Copy)]
struct Limits {
    conversations: usize,
    messages: usize,
    readable: usize,
}

/// Finds the page the token belongs to (and checks it is `page_id`), applies its faults.
fn with_page(
    world: &mut World,
    token: &str,
    page_id: Option<&&str>,
    answer: impl FnOnce(&mut Page) -> Response,
) -> Response {
    let Some(page) = world.page_by_token(token) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        );
    };
    if page_id.is_some_and(|id| *id != page.id) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "Unsupported get request. Object does not exist or lacks permission.",
        );
    }
    if page.revoked {
        return graph_error(
            StatusCode::BAD_REQUEST,
            190,
            Some(492),
            "Error validating access token: The user is not an admin of this page.",
        );
    }
    match page.faults.pop_front() {
        Some(Fault::Throttled) => graph_error(
            StatusCode::BAD_REQUEST,
            613,
            None,
            "Calls to this api have exceeded the rate limit.",
        ),
        Some(Fault::ServerError) => graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            2,
            None,
            "Service temporarily unavailable",
        ),
        Some(Fault::Pass) | None => answer(page),
    }
}

fn conversations(limits: Limits, page: &Page, request: &Request<'_>) -> Value {
    let mut ordered: Vec<&Conversation> = page.conversations.iter().collect();
    ordered.sort_by_key(|c| std::cmp::Reverse(c.updated()));
    let offset = request.offset();
    let data: Vec<Value> = ordered
        .iter()
        .skip(offset)
        .take(limits.conversations)
        .map(|c| {
            json!({
                "id": c.id,
                "updated_time": graph_time(c.updated()),
                "participants": {"data": [{"id": c.customer, "name": format!("Customer {}", c.customer)}, {"id": page.id, "name": page.name}]},
                "messages": messages_page(limits, c, request, 0).unwrap_or_else(|| json!({"data": []})),
            })
        })
        .collect();
    let mut result = json!({"data": data});
    if offset + limits.conversations < ordered.len() {
        result["paging"] = json!({"next": link(request, &format!("{}/conversations", page.id), offset + limits.conversations)});
    }
    result
}

/// Messages most recent first; `None` when `offset` is past what Meta still serves.
fn messages_page(
    limits: Limits,
    conversation: &Conversation,
    request: &Request<'_>,
    offset: usize,
) -> Option<Value> {
    if offset >= limits.readable {
        return None;
    }
    let newest_first: Vec<&Message> = conversation.messages.iter().rev().collect();
    let end = (offset + limits.messages)
        .min(limits.readable)
        .min(newest_first.len());
    let data: Vec<Value> = newest_first[offset.min(end)..end]
        .iter()
        .map(|m| message(m, request))
        .collect();
    let mut result = json!({"data": data});
    if end < newest_first.len() {
        result["paging"] =
            json!({"next": link(request, &format!("{}/messages", conversation.id), end)});
    }
    Some(result)
}

/// A message as Graph shows it; its attachment links (paths on the sandbox's own stand-in
/// CDN) made absolute.
fn message(m: &Message, request: &Request<'_>) -> Value {
    let root = request
        .base
        .rsplit_once('/')
        .map_or(request.base, |(root, _)| root);
    let absolute = |url: &str| match url.starts_with('/') {
        true => format!("{root}{url}"),
        false => url.to_string(),
    };
    let mut v = json!({
        "id": m.id,
        "created_time": graph_time(m.created),
        "from": {"id": m.from},
        "to": {"data": [{"id": m.to}]},
        "message": m.text.clone().unwrap_or_default(),
    });
    if let Some(url) = &m.image_url {
        v["attachments"] = json!({"data": [{"id": format!("att_{}", m.id), "mime_type": "image/jpeg", "image_data": {"url": absolute(url), "width": 800, "height": 600}}]});
    }
    if let Some(sticker) = &m.sticker {
        v["sticker"] = json!(absolute(sticker));
    }
    v
}

fn link(request: &Request<'_>, path: &str, after: usize) -> String {
    let token = request.param("access_token").unwrap_or_default();
    let fields = request.param("fields").unwrap_or_default();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("access_token", token)
        .append_pair("fields", fields)
        .append_pair("after", &after.to_string())
        .finish();
    format!("{}/{path}?{query}", request.base)
}

fn deleted() -> Response {
    graph_error(
        StatusCode::BAD_REQUEST,
        100,
        Some(2534014),
        "This message has been deleted.",
    )
}

fn exchange(request: &Request<'_>) -> Response {
    if request.param("grant_type") == Some("fb_exchange_token") {
        let short = request.param("fb_exchange_token").unwrap_or_default();
        return Json(json!({"access_token": format!("sandbox-long-{short}"), "token_type": "bearer", "expires_in": 5_184_000})).into_response();
    }
    match request.param("code") {
        Some(code) if !code.is_empty() => Json(json!({"access_token": format!("sandbox-short-{code}"), "token_type": "bearer", "expires_in": 5400})).into_response(),
        _ => graph_error(StatusCode::BAD_REQUEST, 100, None, "Missing authorization code"),
    }
}

/// The merchant manages every page of the world; one page per result page, to show paging.
fn accounts(world: &World, request: &Request<'_>, token: &str) -> Response {
    if !token.starts_with("sandbox-long-") {
        return graph_error(
            StatusCode::BAD_REQUEST,
            190,
            None,
            "Invalid OAuth access token.",
        );
    }
    let offset = request.offset();
    let data: Vec<Value> = world.pages.iter().skip(offset).take(1).map(|p| json!({
        "id": p.id, "name": p.name, "category": p.category, "access_token": p.token, "tasks": ["MANAGE", "MESSAGING"],
    })).collect();
    let mut result = json!({"data": data, "paging": {"cursors": {"before": format!("p{offset}"), "after": format!("p{}", offset + 1)}}});
    if offset + 1 < world.pages.len() {
        result["paging"]["next"] = json!(link(request, "me/accounts", offset + 1));
    }
    Json(result).into_response()
}

fn graph_error(status: StatusCode, code: i64, subcode: Option<i64>, message: &str) -> Response {
    let mut error = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "SandboxTrace"});
    if let Some(sub) = subcode {
        error["error_subcode"] = json!(sub);
    }
    (status, Json(json!({"error": error}))).into_response()
}

/// Graph's `2024-01-01T12:00:00+0000`.
pub fn graph_time(unix: i64) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+0000");
    OffsetDateTime::from_unix_timestamp(unix)
        .map_or_else(|_| String::new(), |t| t.format(&format).unwrap_or_default())
}

/// The Facebook Login dialog: one button that sends the browser back with a code.
pub(super) fn dialog(query: &[(String, String)]) -> Response {
    let param = |name: &str| super::query_param(query, name);
    let approve = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("redirect_uri", param("redirect_uri"))
        .append_pair("state", param("state"))
        .finish();
    axum::response::Html(super::consent_page(
        "Allow salesbot to manage Demo Page",
        &format!("salesbot asks for: {}", param("scope").replace(',', ", ")),
        &format!("approve?{approve}"),
        "Continue",
    ))
    .into_response()
}

/// What the dialog's button does: back to the app with `code` and the app's `state`.
pub(super) fn approve(query: &[(String, String)]) -> Response {
    let param = |name: &str| super::query_param(query, name);
    let back = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "code",
            &format!("sandbox-fb-code-{}", crate::store::unix_now()),
        )
        .append_pair("state", param("state"))
        .finish();
    (
        StatusCode::FOUND,
        [(
            axum::http::header::LOCATION,
            format!("{}?{back}", param("redirect_uri")),
        )],
    )
        .into_response()
}
