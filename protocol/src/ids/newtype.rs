//! `string_newtype!`: the shape every parsed string identifier shares (a private `String`,
//! `FIELD`, `as_str`, `Display`, `AsRef<str>`, `FromStr` and a `Deserialize` that goes
//! through the type's own `parse`).
//!
//! Invariant: a value of such a type exists only if its `parse` accepted it, whether it
//! came from the board, a string or a decoded message. The expansion names `IdError`,
//! `fmt`, `Serialize`, `Deserialize` and `Deserializer`: the module using it imports them.

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident, $field:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The field name used in error messages.
            pub const FIELD: &'static str = $field;

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $name::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(super) use string_newtype;
