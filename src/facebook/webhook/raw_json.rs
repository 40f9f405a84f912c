//! Reading a webhook body without building it: the few members the webhook looks at, as raw
//! JSON borrowed from the body, so that each event can be stored as the bytes Meta sent.
//!
//! The answers are those a parsed `serde_json::Value` would give (a repeated member's last
//! value counts; anything of the wrong type reads as absent), without its allocations.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The members `names` of the JSON object `json`, raw, in the order asked for; `None` when
/// `json` is not one JSON object.
pub fn members<'a, const N: usize>(
    json: &'a str,
    names: [&str; N],
) -> Option<[Option<&'a RawValue>; N]> {
    let mut de = serde_json::Deserializer::from_str(json);
    let found = de.deserialize_map(Members(names)).ok()?;
    de.end().ok()?;
    Some(found)
}

/// The elements of a JSON array; none when `json` is anything else.
pub fn elements(json: Option<&RawValue>) -> Vec<&RawValue> {
    json.and_then(|json| serde_json::from_str(json.get()).ok())
        .unwrap_or_default()
}

/// A JSON string's text; `None` for anything else.
pub fn text(json: Option<&RawValue>) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Text>(json?.get()).ok().map(|t| t.0)
}

/// Whether `json` is valid JSON at all (telling a body that is not JSON from one that is
/// JSON of the wrong shape).
pub fn is_json(json: &str) -> bool {
    serde_json::from_str::<IgnoredAny>(json).is_ok()
}

struct Members<'n, const N: usize>([&'n str; N]);

impl<'de, const N: usize> Visitor<'de> for Members<'_, N> {
    type Value = [Option<&'de RawValue>; N];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = [None; N];
        while let Some(Text(name)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            if let Some(i) = self.0.iter().position(|wanted| *wanted == name) {
                found[i] = Some(value);
            }
        }
        Ok(found)
    }
}

/// A JSON string, borrowed from the input unless it has escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn raw(json: &str) -> &RawValue {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn members_are_found_as_a_parsed_value_finds_them() {
        let json = r#"{"b":[1, 2],"a":{"x":"y"},"c":3,"a\u0062":"escaped","a":"last"}"#;
        let [a, b, ab, d] = members(json, ["a", "b", "ab", "d"]).unwrap();
        let value: Value = serde_json::from_str(json).unwrap();
        assert_eq!(a.map(RawValue::get), Some(r#""last""#));
        assert_eq!(value["a"], json!("last"));
        assert_eq!(b.map(RawValue::get), Some("[1, 2]"));
        assert_eq!(text(ab).as_deref(), Some("escaped"));
        assert!(d.is_none());
    }

    #[test]
    fn only_one_valid_object_has_members() {
        for bad in [
            "[1]",
            "\"a\"",
            "{\"a\":1",
            "{\"a\":1} {}",
            "{\"a\":tru}",
            "",
        ] {
            assert!(members(bad, ["a"]).is_none(), "{bad}");
        }
        assert!(is_json("[1]") && !is_json("{\"a\":1"));
    }

    #[test]
    fn elements_and_text_read_anything_else_as_absent() {
        assert_eq!(elements(Some(raw("[{}, 2]"))).len(), 2);
        assert!(elements(Some(raw("{\"0\":1}"))).is_empty());
        assert!(elements(None).is_empty());
        assert_eq!(text(Some(raw("\"page\""))).as_deref(), Some("page"));
        assert_eq!(text(Some(raw("7"))), None);
    }
}
