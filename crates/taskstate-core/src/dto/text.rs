//! [`SharedText`]: a stored value as reads hand it out.

use std::ops::Deref;

crate::ids::string_id! {
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
    SharedText
}

impl Default for SharedText {
    fn default() -> Self {
        Self::new("")
    }
}

impl Deref for SharedText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<SharedText> for String {
    fn from(t: SharedText) -> Self {
        t.into_string()
    }
}

impl PartialEq<str> for SharedText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
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
        self == other.as_str()
    }
}

impl PartialEq<SharedText> for &str {
    fn eq(&self, other: &SharedText) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<SharedText> for String {
    fn eq(&self, other: &SharedText) -> bool {
        *self == other.as_str()
    }
}
