//! Plain HTML pages for the merchant's browser, where the OAuth flow's steps end. API clients
//! (and the original's users) keep the JSON: a page is sent only to a request whose `Accept`
//! names `text/html`, as a browser's navigation does. No script, no outside asset.

use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// True when the request comes from a browser navigating (its `Accept` names `text/html`).
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| {
            let mut parts = media.split(';').map(str::trim);
            let is_html = parts
                .next()
                .is_some_and(|m| m.eq_ignore_ascii_case("text/html"));
            // `text/html;q=0` says "anything but HTML".
            is_html && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
}

/// Text made safe to place in HTML, in an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => safe.push_str("&amp;"),
            '<' => safe.push_str("&lt;"),
            '>' => safe.push_str("&gt;"),
            '"' => safe.push_str("&quot;"),
            '\'' => safe.push_str("&#39;"),
            _ => safe.push(c),
        }
    }
    safe
}

/// The route named `name` beside a callback URL (`…/facebook/callback` → `…/facebook/login`):
/// the app's own address, wherever it is mounted, as its redirect URIs say.
pub fn beside(callback: &url::Url, name: &str) -> String {
    callback
        .join(name)
        .map_or_else(|_| format!("/{name}"), |url| url.to_string())
}

/// A whole page: `title` is text (escaped here), `body` is HTML the caller built with [`escape`].
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let title = escape(title);
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · salesbot</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;\
         padding:0 1rem;line-height:1.5}}a.next,button{{font-size:1.1rem}}</style></head>\
         <body><h1>{title}</h1>\n{body}\n</body></html>\n"
    );
    (status, Html(html)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn browsers_get_html_and_api_clients_do_not() {
        let chromium = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
        assert!(wants_html(&accept(chromium)));
        assert!(wants_html(&accept("TEXT/HTML")));
        for api in ["application/json", "*/*", "text/html;q=0, application/json"] {
            assert!(!wants_html(&accept(api)), "{api}");
        }
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
