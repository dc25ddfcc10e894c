//! [`SharedText`]: a stored value as reads hand it out.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A stored text value (a serialized result or exception) as
/// [`get_result`](crate::StateBackend::get_result) and
/// [`get_exception`](crate::StateBackend::get_exception) return it: shared
/// and immutable, so an engine that keeps values in memory hands out one
/// reference count, however large the value. It reads as a `str`
/// (`Deref`), compares with strings, and `into_string` gives an owned copy.
///
/// ```
/// use taskstate_core::SharedText;
/// let t = SharedText::from("{\"ok\": true}");
/// assert_eq!(t, "{\"ok\": true}");
/// assert_eq!(t.len(), 12);
/// let owned: String = t.clone().into_string();
/// assert_eq!(owned, *t);
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SharedText(Arc<str>);

impl SharedText {
    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned (a copy).
    #[must_use]
    pub fn into_string(self) -> String {
        self.0.as_ref().to_owned()
    }
}

impl Deref for SharedText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SharedText {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for SharedText {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SharedText {
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl From<String> for SharedText {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

impl From<SharedText> for String {
    fn from(t: SharedText) -> Self {
        t.into_string()
    }
}

impl fmt::Display for SharedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SharedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for SharedText {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for SharedText {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for SharedText {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<SharedText> for str {
    fn eq(&self, other: &SharedText) -> bool {
        *self == *other.0
    }
}

impl PartialEq<SharedText> for &str {
    fn eq(&self, other: &SharedText) -> bool {
        **self == *other.0
    }
}

impl PartialEq<SharedText> for String {
    fn eq(&self, other: &SharedText) -> bool {
        **self == *other.0
    }
}
