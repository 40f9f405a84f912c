//! Ids from Meta that become file names: only `[A-Za-z0-9_-]{1,64}` can ever be constructed,
//! so a `PageId` or `SenderId` cannot name a path outside its folder (`../`, `a/b`, `NUL`…).

use std::fmt;

/// Why an id was refused. Carries no copy of the input: it may be attacker-chosen and is
/// logged by the caller in escaped form if at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    #[error("id is empty")]
    Empty,
    #[error("id is longer than 64 characters")]
    TooLong,
    #[error("id may contain only ASCII letters, digits, '_' and '-'")]
    BadCharacter,
}

fn validate(raw: &str) -> Result<(), InvalidId> {
    if raw.is_empty() {
        return Err(InvalidId::Empty);
    }
    if raw.len() > 64 {
        return Err(InvalidId::TooLong);
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(InvalidId::BadCharacter);
    }
    Ok(())
}

macro_rules! safe_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                validate(raw).map(|()| Self(raw.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;
            fn try_from(raw: &str) -> Result<Self, InvalidId> {
                Self::parse(raw)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

safe_id!(
    /// A Facebook Page id: the folder `facebook/<page_id>/`.
    PageId
);
safe_id!(
    /// The page-scoped id of a Messenger customer: the file `conversations/<sender_id>.json`.
    SenderId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_ids_are_accepted() {
        for raw in ["101368371725791", "test_user_id", "a-b_C9", &"9".repeat(64)] {
            assert_eq!(PageId::parse(raw).unwrap().as_str(), raw);
            assert_eq!(SenderId::parse(raw).unwrap().to_string(), raw);
        }
    }

    #[test]
    fn anything_that_could_leave_the_folder_is_rejected() {
        let cases = [
            ("", InvalidId::Empty),
            ("../x", InvalidId::BadCharacter),
            ("..", InvalidId::BadCharacter),
            ("a/b", InvalidId::BadCharacter),
            ("a\\b", InvalidId::BadCharacter),
            (".hidden", InvalidId::BadCharacter),
            ("a b", InvalidId::BadCharacter),
            ("a\0b", InvalidId::BadCharacter),
            ("pagé", InvalidId::BadCharacter),
            ("１２３", InvalidId::BadCharacter),
            ("a\n", InvalidId::BadCharacter),
        ];
        for (raw, why) in cases {
            assert_eq!(PageId::parse(raw), Err(why.clone()), "{raw:?}");
            assert_eq!(SenderId::parse(raw), Err(why), "{raw:?}");
        }
        assert_eq!(PageId::parse(&"1".repeat(65)), Err(InvalidId::TooLong));
    }
}
