//! Hiding secrets in store URLs before they reach a message.

/// `url` with every password replaced by `***`: the `user:password@` of a
/// URL and any `password=` parameter (of a URL's query or a `key=value`
/// connection string). Every message that names a store goes through it.
///
/// ```
/// use taskstate_core::redact_url;
/// assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
/// assert_eq!(
///     redact_url("postgres://h/db?user=u&password=secret&schema=s"),
///     "postgres://h/db?user=u&password=***&schema=s"
/// );
/// assert_eq!(redact_url("host=h password=secret user=u"), "host=h password=*** user=u");
/// assert_eq!(redact_url("sqlite:///tmp/a@b.db"), "sqlite:///tmp/a@b.db");
/// ```
#[must_use]
pub fn redact_url(url: &str) -> String {
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s && !url[s + 3..at].contains('/') => {
            match url[s + 3..at].split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    let mut from = 0;
    while let Some(i) = out[from..].find("password=").map(|i| i + from) {
        let start = i + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |e| e + start);
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}
