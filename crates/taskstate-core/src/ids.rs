//! Identifier newtypes and their key forms (SPEC §2).
//!
//! Ids are opaque UTF-8 strings: nothing here trims, lower-cases or validates
//! their content beyond the key grammar of [`TaskId`] and [`CallId`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::KeyError;

/// A newtype over a shared immutable string (ids here, and
/// [`SharedText`](crate::SharedText)): construction, views, conversions,
/// `Display` and `Debug`; equality, order and hash are the string's.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Cloning is cheap (a shared, immutable string: one reference
        /// count), so records holding it clone without copying text.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Wraps a string (a copy of it). Any string is accepted.
            #[must_use]
            pub fn new(id: impl AsRef<str>) -> Self {
                Self(std::sync::Arc::from(id.as_ref()))
            }

            /// The string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The string, owned (a copy).
            #[must_use]
            pub fn into_string(self) -> String {
                self.0.as_ref().to_owned()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(std::sync::Arc::from(s))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(std::sync::Arc::from(s))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

pub(crate) use string_id;

string_id! {
    /// The id of one task invocation (usually a uuid4). Its text form is itself.
    ///
    /// ```
    /// use taskstate_core::InvocationId;
    /// let id = InvocationId::new("0c5e7b1a-3f42-4d8e-a915-6b2f0e9d1a01");
    /// assert_eq!(id.as_str(), "0c5e7b1a-3f42-4d8e-a915-6b2f0e9d1a01");
    /// ```
    InvocationId
}

string_id! {
    /// The id of a runner (a worker process, thread or runner class instance).
    RunnerId
}

string_id! {
    /// The id of an application (pynenc's `app_id`), the key of its
    /// [`AppInfo`](crate::AppInfo).
    ///
    /// ```
    /// use taskstate_core::AppId;
    /// assert_eq!(AppId::new("shop").as_str(), "shop");
    /// ```
    AppId
}

/// Equality, order and hash of a key type by its `key()` text alone (its
/// shared text may hold more).
macro_rules! by_key {
    ($name:ident) => {
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                // Clones share their text: the same bytes need no compare
                // (an invocation's call id and its call's usually are one).
                let (a, b) = (self.key(), other.key());
                std::ptr::eq(a, b) || a == b
            }
        }

        impl Eq for $name {}

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.key().cmp(other.key())
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.key().hash(state);
            }
        }
    };
}

/// A task: the Python module and function name.
///
/// Its key is `module.func_name`; parsing splits at the **last** `.`, and
/// both sides must be non-empty. Ordering and equality follow the key text
/// (the order every list of task ids is returned in).
///
/// ```
/// use taskstate_core::TaskId;
/// let t: TaskId = "a.b.c.fn".parse().unwrap();
/// assert_eq!((t.module(), t.func_name()), ("a.b.c", "fn"));
/// assert_eq!(t.key(), "a.b.c.fn");
/// assert!("nodot".parse::<TaskId>().is_err());
/// ```
///
/// Cloning is cheap (one reference count); a call's task shares the call's
/// text.
#[derive(Clone)]
pub struct TaskId {
    /// The key, possibly followed by more text it shares (a call's
    /// `:args_id`): the key is `text[..len]`.
    text: Arc<str>,
    len: usize,
    /// Byte index of the separating `.` in the key.
    dot: usize,
}

by_key!(TaskId);

impl TaskId {
    /// Builds a task id from its parts. Both parts must be non-empty, and the
    /// function name must not contain a `.` (or the key would not parse back
    /// to the same parts).
    pub fn new(module: &str, func_name: &str) -> Result<Self, KeyError> {
        if module.is_empty() || func_name.is_empty() || func_name.contains('.') {
            return Err(KeyError::new(
                "task id",
                format!("{module}.{func_name}"),
                "module and function name must be non-empty and the function name may not contain '.'",
            ));
        }
        let key = format!("{module}.{func_name}");
        Ok(Self {
            len: key.len(),
            text: Arc::from(key),
            dot: module.len(),
        })
    }

    /// The module part.
    #[must_use]
    pub fn module(&self) -> &str {
        &self.text[..self.dot]
    }

    /// The function-name part.
    #[must_use]
    pub fn func_name(&self) -> &str {
        &self.text[self.dot + 1..self.len]
    }

    /// The key form, `module.func_name`.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.text[..self.len]
    }

    /// The dot of a task key: `None` unless both sides are non-empty.
    fn split(key: &str) -> Option<usize> {
        key.rfind('.').filter(|dot| *dot > 0 && dot + 1 < key.len())
    }
}

impl FromStr for TaskId {
    type Err = KeyError;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        match key.rfind('.') {
            Some(dot) if dot > 0 && dot + 1 < key.len() => Ok(Self {
                text: Arc::from(key),
                len: key.len(),
                dot,
            }),
            Some(_) => Err(KeyError::new(
                "task id",
                key,
                "module and function name must both be non-empty",
            )),
            None => Err(KeyError::new(
                "task id",
                key,
                "expected `module.func_name` (no '.' found)",
            )),
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({:?})", self.key())
    }
}

/// A call: a task with one set of arguments, identified by their args id.
///
/// Its key is `task_key:args_id`; parsing splits at the **last** `:` and then
/// parses the task key.
///
/// ```
/// use taskstate_core::CallId;
/// let c: CallId = "a.b:c:d".parse().unwrap();
/// assert_eq!(c.task_id().module(), "a");
/// assert_eq!(c.task_id().func_name(), "b:c");
/// assert_eq!(c.args_id(), "d");
/// ```
///
/// One shared string holds the whole key; its task is a view of it.
#[derive(Clone)]
pub struct CallId {
    /// The task, whose text is this call's whole key.
    task: TaskId,
}

by_key!(CallId);

impl CallId {
    /// Builds a call id from a task and an args id (see [`crate::args_id`]).
    #[must_use]
    pub fn new(task: TaskId, args_id: &str) -> Self {
        Self {
            task: TaskId {
                text: Arc::from(format!("{}:{args_id}", task.key())),
                len: task.len,
                dot: task.dot,
            },
        }
    }

    /// The task this call invokes.
    #[must_use]
    pub fn task_id(&self) -> &TaskId {
        &self.task
    }

    /// The args id (`no_args` or a sha256 hex digest).
    #[must_use]
    pub fn args_id(&self) -> &str {
        &self.task.text[self.task.len + 1..]
    }

    /// The key form, `task_key:args_id`.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.task.text
    }
}

impl FromStr for CallId {
    type Err = KeyError;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        let colon = last_colon(key).ok_or_else(|| {
            KeyError::new("call id", key, "expected `task_key:args_id` (no ':' found)")
        })?;
        let task_key = &key[..colon];
        let dot = TaskId::split(task_key).ok_or_else(|| {
            let reason = task_key
                .parse::<TaskId>()
                .err()
                .map_or_else(String::new, |e| e.reason);
            KeyError::new("call id", key, format!("bad task key: {reason}"))
        })?;
        Ok(Self {
            task: TaskId {
                text: Arc::from(key),
                len: colon,
                dot,
            },
        })
    }
}

/// The index of the last `:` in a call key. Its args id is nearly always
/// a sha256 hex digest (SPEC §2), so the colon is first looked for where
/// a digest would put it: that no `:` follows is then a fixed-length test
/// the compiler turns into a few vector compares, where a search from the
/// end would crawl back over the 64 digits.
fn last_colon(key: &str) -> Option<usize> {
    const DIGEST: usize = 64;
    let b = key.as_bytes();
    if let Some(at) = b.len().checked_sub(DIGEST + 1)
        && b[at] == b':'
        && let Ok(tail) = <&[u8; DIGEST]>::try_from(&b[at + 1..])
        && !tail.iter().fold(false, |seen, &c| seen | (c == b':'))
    {
        return Some(at);
    }
    key.rfind(':')
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl fmt::Debug for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallId({:?})", self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The digest-position shortcut finds the colon `rfind` finds:
        /// keys of every length around a digest's, colons anywhere
        /// (where a digest's colon goes, inside the digest, before it),
        /// non-ASCII bytes, or no colon at all.
        #[test]
        fn last_colon_is_the_last_colon(
            head in "[a-z.:é]{0,12}",
            tail in proptest::collection::vec(proptest::sample::select(vec!['a', '0', 'f', ':', 'é']), 60..70),
        ) {
            let key = format!("{head}{}", tail.iter().collect::<String>());
            proptest::prop_assert_eq!(last_colon(&key), key.rfind(':'));
            let digest = format!("{head}:{}", "0123456789abcdef".repeat(4));
            proptest::prop_assert_eq!(last_colon(&digest), digest.rfind(':'));
        }
    }

    /// A call's task is a view of the call's key, yet equal, hashed and
    /// ordered as the standalone task of the same key.
    #[test]
    fn a_calls_task_is_the_same_task() {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        let hash = |t: &TaskId| {
            let mut h = DefaultHasher::new();
            t.hash(&mut h);
            h.finish()
        };
        let alone: TaskId = "pkg.mod.fn".parse().unwrap();
        let call = CallId::new(alone.clone(), "abc");
        let parsed: CallId = "pkg.mod.fn:abc".parse().unwrap();
        for t in [call.task_id(), parsed.task_id()] {
            assert_eq!(t, &alone);
            assert_eq!(t.key(), "pkg.mod.fn");
            assert_eq!((t.module(), t.func_name()), ("pkg.mod", "fn"));
            assert_eq!(hash(t), hash(&alone));
            assert_eq!(t.cmp(&alone), std::cmp::Ordering::Equal);
            assert_eq!(t.to_string(), "pkg.mod.fn");
        }
        assert_eq!(call, parsed);
        assert_eq!((call.key(), call.args_id()), ("pkg.mod.fn:abc", "abc"));
        let other: TaskId = "pkg.mod.fo".parse().unwrap();
        assert!(call.task_id() < &other);
    }

    #[test]
    fn task_key_splits_at_last_dot() {
        let t: TaskId = "a.b.c.fn".parse().unwrap();
        assert_eq!(t.module(), "a.b.c");
        assert_eq!(t.func_name(), "fn");
        assert_eq!(t.to_string(), "a.b.c.fn");
    }

    #[test]
    fn task_key_errors() {
        for bad in ["", "nodot", ".fn", "mod.", "."] {
            let e = bad.parse::<TaskId>().unwrap_err();
            assert_eq!(e.key, bad);
            assert_eq!(e.what, "task id");
        }
    }

    #[test]
    fn call_key_splits_at_last_colon() {
        let c: CallId = "a.b:c:d".parse().unwrap();
        assert_eq!(c.task_id().module(), "a");
        assert_eq!(c.task_id().func_name(), "b:c");
        assert_eq!(c.args_id(), "d");
        assert_eq!(c.key(), "a.b:c:d");
        let empty_args: CallId = "m.f:".parse().unwrap();
        assert_eq!(empty_args.args_id(), "");
    }

    #[test]
    fn call_key_errors() {
        assert!("m.f".parse::<CallId>().is_err());
        assert!("nodot:x".parse::<CallId>().is_err());
        assert!(":x".parse::<CallId>().is_err());
    }

    #[test]
    fn new_round_trips_through_key() {
        let t = TaskId::new("pkg.mod", "run").unwrap();
        let c = CallId::new(t.clone(), "no_args");
        let back: CallId = c.key().parse().unwrap();
        assert_eq!(back, c);
        assert_eq!(back.task_id(), &t);
        assert!(TaskId::new("m", "a.b").is_err());
        assert!(TaskId::new("", "f").is_err());
    }

    #[test]
    fn task_order_is_key_order() {
        // Derived field order would put ("a","z") first; key order puts "a-b.c" first.
        let a = TaskId::new("a", "z").unwrap();
        let b = TaskId::new("a-b", "c").unwrap();
        assert!(b < a);
        assert!(b.key() < a.key());
    }
}
