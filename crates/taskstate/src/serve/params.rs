//! Query strings, read strictly: a parameter a page does not know, one
//! given twice, or a value that does not parse is a 400 with a message
//! naming it — never a silent default, never a 500.

use taskstate_core::{Cursor, InvocationId, InvocationStatus, MAX_ID_BYTES, TaskId, Timestamp};

use super::WebError;

/// The decoded parameters of one request.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `raw` and refuses names outside `allowed` (`token` is always
    /// allowed: the access check reads it) and repeated names.
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, WebError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if k == "token" {
                continue;
            }
            if !allowed.contains(&k.as_ref()) {
                let known = if allowed.is_empty() {
                    "this page takes no parameters".to_owned()
                } else {
                    format!("known: {}", allowed.join(", "))
                };
                return Err(WebError::bad(format!(
                    "unknown parameter {:?} ({known})",
                    clip(&k)
                )));
            }
            if out.iter().any(|(n, _)| *n == k) {
                return Err(WebError::bad(format!("parameter {k:?} given twice")));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params(out))
    }

    /// The value of `name`; an empty value (an empty form field) is absent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn status(&self) -> Result<Option<InvocationStatus>, WebError> {
        self.get("status")
            .map(|s| {
                s.parse().map_err(|_| {
                    let names: Vec<&str> =
                        InvocationStatus::ALL.iter().map(|s| s.as_str()).collect();
                    WebError::bad(format!(
                        "status {:?} is not one of: {}",
                        clip(s),
                        names.join(", ")
                    ))
                })
            })
            .transpose()
    }

    pub(crate) fn task(&self, name: &str) -> Result<Option<TaskId>, WebError> {
        self.get(name)
            .map(|t| {
                if t.len() > MAX_ID_BYTES {
                    return Err(WebError::bad(format!(
                        "{name} is longer than {MAX_ID_BYTES} bytes"
                    )));
                }
                t.parse::<TaskId>()
                    .map_err(|e| WebError::bad(format!("{name}: {e}")))
            })
            .transpose()
    }

    pub(crate) fn id(&self, name: &str) -> Result<Option<InvocationId>, WebError> {
        self.get(name).map(|v| checked_id(name, v)).transpose()
    }

    /// A time: an ISO 8601 instant (Python's `isoformat()` and variants)
    /// or a date (midnight UTC).
    pub(crate) fn time(&self, name: &str) -> Result<Option<Timestamp>, WebError> {
        self.get(name).map(|v| parse_time(name, v)).transpose()
    }

    pub(crate) fn cursor(&self, name: &str) -> Result<Option<Cursor>, WebError> {
        Ok(self.get(name).map(Cursor::from_token))
    }

    /// A count in `1..=max`, `default` when absent.
    pub(crate) fn count(&self, name: &str, default: usize, max: usize) -> Result<usize, WebError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(WebError::bad(format!(
                    "{name} must be a whole number from 1 to {max}, not {:?}",
                    clip(v)
                ))),
            },
        }
    }
}

/// An id from a URL: non-empty and within the contract's limit.
pub(crate) fn checked_id(what: &str, v: &str) -> Result<InvocationId, WebError> {
    if v.is_empty() {
        return Err(WebError::bad(format!("{what} must not be empty")));
    }
    if v.len() > MAX_ID_BYTES {
        return Err(WebError::bad(format!(
            "{what} is longer than {MAX_ID_BYTES} bytes"
        )));
    }
    Ok(InvocationId::new(v))
}

fn parse_time(name: &str, v: &str) -> Result<Timestamp, WebError> {
    let bad = || {
        WebError::bad(format!(
            "{name} {:?} is not a time: use ISO 8601 such as 2026-01-31T12:00:00+00:00 or a date 2026-01-31",
            clip(v)
        ))
    };
    if let Ok(t) = Timestamp::parse(v) {
        return Ok(t);
    }
    let date = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| bad())?;
    let micros = date
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp_micros())
        .ok_or_else(bad)?;
    Ok(Timestamp::from_micros(micros))
}

/// At most 80 characters of a value, for messages about it.
pub(crate) fn clip(v: &str) -> String {
    let mut s: String = v.chars().take(80).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parsing_names_the_problem() {
        let p = |raw: &str| Params::parse(Some(raw), &["status", "limit", "since"]);
        let msg = |r: Result<Params, WebError>| match r {
            Err(WebError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {:?}", other.map(|_| ())),
        };
        assert!(msg(p("bogus=1")).contains("unknown parameter \"bogus\""));
        assert!(msg(p("limit=1&limit=2")).contains("given twice"));
        let ok = p("status=&limit=5&token=x").unwrap_or_else(|_| panic!("valid"));
        assert_eq!(ok.status().ok(), Some(None));
        assert_eq!(ok.count("limit", 50, 500).ok(), Some(5));
        for bad in ["limit=0", "limit=-1", "limit=501", "limit=1e3", "limit=%FF"] {
            let r = p(bad).and_then(|p| p.count("limit", 50, 500));
            assert!(matches!(r, Err(WebError::BadRequest(_))), "{bad}");
        }
        let r = p("status=<script>").and_then(|p| p.status());
        assert!(msg(r.map(|_| Params(vec![]))).contains("is not one of"));
        let t = p("since=2026-01-31").and_then(|p| p.time("since"));
        assert_eq!(
            t.ok().flatten().map(|t| t.to_string()),
            Some("2026-01-31T00:00:00+00:00".to_owned())
        );
        assert!(p("since=yesterday").and_then(|p| p.time("since")).is_err());
    }
}
