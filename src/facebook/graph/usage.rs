//! Meta's rate-limit headers, read so the poll slows down before it is throttled.
//! <https://developers.facebook.com/docs/graph-api/overview/rate-limiting>
//!
//! `X-App-Usage: {"call_count":28,"total_time":25,"total_cputime":25}` (percentages) and
//! `X-Business-Use-Case-Usage: {"<id>":[{"type":"pages","call_count":..,
//! "estimated_time_to_regain_access":<minutes>}]}`.

use reqwest::header::HeaderMap;
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// The highest percentage of any limit Meta reports, 0–100.
    pub highest_percent: f64,
    /// Minutes until a throttled app may call again; 0 when not throttled.
    pub regain_access_minutes: f64,
}

impl Usage {
    pub fn from_headers(headers: &HeaderMap) -> Usage {
        let mut usage = Usage::default();
        let json = |name: &str| -> Option<Value> {
            serde_json::from_str(headers.get(name)?.to_str().ok()?).ok()
        };
        if let Some(app) = json("x-app-usage") {
            usage.absorb(&app);
        }
        if let Some(Value::Object(businesses)) = json("x-business-use-case-usage") {
            for entries in businesses.values() {
                for entry in entries.as_array().into_iter().flatten() {
                    usage.absorb(entry);
                }
            }
        }
        usage
    }

    fn absorb(&mut self, entry: &Value) {
        for field in ["call_count", "total_time", "total_cputime"] {
            if let Some(p) = entry.get(field).and_then(Value::as_f64) {
                self.highest_percent = self.highest_percent.max(p);
            }
        }
        if let Some(m) = entry
            .get("estimated_time_to_regain_access")
            .and_then(Value::as_f64)
        {
            self.regain_access_minutes = self.regain_access_minutes.max(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn the_highest_figure_of_both_headers_counts() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-app-usage",
            HeaderValue::from_static(r#"{"call_count":12,"total_time":40,"total_cputime":3}"#),
        );
        headers.insert(
            "x-business-use-case-usage",
            HeaderValue::from_static(r#"{"999":[{"type":"pages","call_count":85,"total_time":1,"total_cputime":1,"estimated_time_to_regain_access":2}]}"#),
        );
        assert_eq!(
            Usage::from_headers(&headers),
            Usage {
                highest_percent: 85.0,
                regain_access_minutes: 2.0
            }
        );
        assert_eq!(Usage::from_headers(&HeaderMap::new()), Usage::default());
        let mut garbage = HeaderMap::new();
        garbage.insert("x-app-usage", HeaderValue::from_static("not json"));
        assert_eq!(Usage::from_headers(&garbage), Usage::default());
    }
}
