//! Newtypes for the values that cross module boundaries: a release id, a
//! commit, a stage's and a host's name. Each is a `String` underneath and
//! reads as a `&str` (`Deref`), so it formats, compares and slices like
//! one, but a function that takes a [`ReleaseId`] cannot be handed a
//! commit by mistake.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                $name(s.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, so width and alignment (`{:w$}`) apply as for a str.
                f.pad(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(s: $name) -> String {
                s.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

string_newtype!(
    /// A release's id: `20261124T190102Z`, minted once per run.
    ReleaseId
);
string_newtype!(
    /// A full commit SHA.
    Commit
);
string_newtype!(
    /// A stage's name from deploy.yml (`staging`, `production`).
    StageName
);
string_newtype!(
    /// A host's name as written in deploy.yml (or an ssh config alias).
    HostName
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_a_str_and_compares_with_one() {
        let id = ReleaseId::from("20261124T190102Z");
        assert_eq!(id, "20261124T190102Z");
        assert_eq!(&id[..8], "20261124");
        assert_eq!(format!("release {id}"), "release 20261124T190102Z");
        assert_eq!(format!("[{:6}]", HostName::from("web")), "[web   ]");
        let older = ReleaseId::from("20261120T000000Z");
        assert!(older < id, "ids order as their text");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"20261124T190102Z\"");
        let back: ReleaseId = serde_json::from_str("\"x\"").unwrap();
        assert_eq!(back.into_string(), "x");
    }
}
