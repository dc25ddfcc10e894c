//! Reading the stored history JSON on the hot path: serde's borrowed
//! decoding, an exact-shape reader for the text pynenc and `to_json` write,
//! and the ids a page of history shares.

use crate::dto::{InvocationHistory, InvocationStatusRecord, Packed};
use crate::ids::{InvocationId, RunnerId};
use crate::time::Timestamp;

/// The stored history JSON, decoded without building a `Value` tree
/// (history decoding is on the hot read path).
#[derive(serde::Deserialize)]
pub(crate) struct WireHistory<'a> {
    #[serde(borrow)]
    pub(crate) invocation_id: std::borrow::Cow<'a, str>,
    #[serde(rename = "_timestamp", borrow)]
    pub(crate) timestamp: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) status_record: WireStatus<'a>,
    #[serde(borrow)]
    pub(crate) runner_context_id: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) registered_by_inv_id: Option<std::borrow::Cow<'a, str>>,
}

/// The ids of the history records decoded last, to share with the next
/// (see [`InvocationHistory::from_json_reusing`](crate::InvocationHistory::from_json_reusing)).
#[derive(Debug, Default)]
pub struct RecentIds {
    pub(crate) invocation: Option<InvocationId>,
    pub(crate) runner: Option<RunnerId>,
}

impl RecentIds {
    pub(crate) fn invocation(&mut self, text: &str) -> InvocationId {
        share(&mut self.invocation, text)
    }

    pub(crate) fn runner(&mut self, text: &str) -> RunnerId {
        share(&mut self.runner, text)
    }

    /// [`RecentIds::invocation`] of stored bytes: `None` if they are not
    /// UTF-8 (checked only when they are not the recent id's).
    fn invocation_bytes(&mut self, bytes: &[u8]) -> Option<InvocationId> {
        share_bytes(&mut self.invocation, bytes)
    }

    /// [`RecentIds::runner`] of stored bytes (see
    /// [`RecentIds::invocation_bytes`]).
    fn runner_bytes(&mut self, bytes: &[u8]) -> Option<RunnerId> {
        share_bytes(&mut self.runner, bytes)
    }
}

/// The id in `recent` if its text is `text`, else a new one, kept in
/// `recent` for the next record.
fn share<T: Clone + AsRef<str> + for<'a> From<&'a str>>(recent: &mut Option<T>, text: &str) -> T {
    match recent {
        Some(id) if id.as_ref() == text => id.clone(),
        _ => recent.insert(T::from(text)).clone(),
    }
}

/// [`share`] of stored bytes: `None` if they are not UTF-8 (checked only
/// when they are not the recent id's).
fn share_bytes<T: Clone + AsRef<str> + for<'a> From<&'a str>>(
    recent: &mut Option<T>,
    bytes: &[u8],
) -> Option<T> {
    match recent {
        Some(id) if id.as_ref().as_bytes() == bytes => Some(id.clone()),
        _ => Some(share(recent, std::str::from_utf8(bytes).ok()?)),
    }
}

/// A reader over the exact text `InvocationHistory::to_json` writes (and
/// pynenc's `json.dumps` with its default separators): the fixed keys in
/// their fixed order, strings without escapes. Anything else — another key
/// order, whitespace, an escape — is `None`, and serde_json reads it.
///
/// It reads bytes, as a database hands them over: the structure is matched
/// byte for byte against ASCII literals, and only the strings kept are
/// checked to be UTF-8 (a timestamp or status is checked by parsing it),
/// so no byte goes unchecked and none is checked twice.
struct Exact<'a> {
    pub(crate) rest: &'a [u8],
}

impl<'a> Exact<'a> {
    fn lit(&mut self, s: &str) -> Option<()> {
        self.rest = self.rest.strip_prefix(s.as_bytes())?;
        Some(())
    }

    /// A string's contents up to its closing quote (the opening one already
    /// read); `None` if it holds an escape.
    fn text(&mut self) -> Option<&'a [u8]> {
        // An escape, or a raw control character (JSON strings hold none:
        // let serde refuse), ends the fast path.
        let end = next_special(self.rest, 0)?;
        if self.rest[end] != b'"' {
            return None;
        }
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Some(s)
    }

    /// [`Exact::text`] when it is `prev` (already checked), found by one
    /// comparison instead of a scan.
    fn same_text(&mut self, prev: &[u8]) -> Option<()> {
        let rest = self.rest.strip_prefix(prev)?.strip_prefix(b"\"")?;
        self.rest = rest;
        Some(())
    }

    /// `null` or a string.
    fn opt_text(&mut self) -> Option<Option<&'a [u8]>> {
        if self.lit("null").is_some() {
            return Some(None);
        }
        self.lit("\"")?;
        self.text().map(Some)
    }

    /// A timestamp string's contents and closing quote, parsed. pynenc's
    /// own shape has a fixed length, read in place without a scan.
    fn timestamp(&mut self) -> Option<(Timestamp, &'a [u8])> {
        if let Some((text, rest)) = self.rest.split_at_checked(Timestamp::STORED_LEN)
            && let Some(rest) = rest.strip_prefix(b"\"")
            && let Some(t) = Timestamp::parse_stored(text)
        {
            self.rest = rest;
            return Some((t, text));
        }
        let text = self.text()?;
        Some((
            Timestamp::parse(std::str::from_utf8(text).ok()?).ok()?,
            text,
        ))
    }
}

/// The stored history JSON in the exact shape `to_json` writes, decoded
/// to the record in one pass; `None` for any other text (another shape, an
/// escape, a value that does not parse, bytes that are not UTF-8), which
/// serde_json then reads or refuses with a precise error.
pub(crate) fn fast_history(text: &[u8], recent: &mut RecentIds) -> Option<InvocationHistory> {
    let mut r = Exact { rest: text };
    r.lit("{\"invocation_id\": \"")?;
    let invocation_id = r.text()?;
    r.lit(", \"_timestamp\": \"")?;
    let (timestamp, timestamp_text) = r.timestamp()?;
    r.lit(", \"status_record\": {\"status\": \"")?;
    let status = std::str::from_utf8(r.text()?).ok()?.parse().ok()?;
    r.lit(", \"runner_id\": ")?;
    let runner_id = r.opt_text()?;
    r.lit(", \"timestamp\": \"")?;
    // pynenc writes the same instant twice: compared, not parsed again.
    let status_time = match r.same_text(timestamp_text) {
        Some(()) => timestamp,
        None => r.timestamp()?.0,
    };
    r.lit("}, \"runner_context_id\": \"")?;
    // ... and usually the same runner twice.
    let runner_context_id = match runner_id {
        Some(id) if r.same_text(id).is_some() => id,
        _ => r.text()?,
    };
    r.lit(", \"registered_by_inv_id\": ")?;
    let registered_by = r.opt_text()?;
    r.lit("}")?;
    if !r.rest.is_empty() {
        return None;
    }
    let runner_context_id = recent.runner_bytes(runner_context_id)?;
    let runner_id = match runner_id {
        Some(id) if id == runner_context_id.as_str().as_bytes() => Some(runner_context_id.clone()),
        Some(id) => Some(RunnerId::new(std::str::from_utf8(id).ok()?)),
        None => None,
    };
    let registered_by_inv_id = match registered_by {
        Some(id) => Some(InvocationId::new(std::str::from_utf8(id).ok()?)),
        None => None,
    };
    Some(InvocationHistory {
        invocation_id: recent.invocation_bytes(invocation_id)?,
        timestamp,
        status_record: InvocationStatusRecord {
            status,
            runner_id,
            timestamp: status_time,
        },
        runner_context_id,
        registered_by_inv_id,
    })
}

/// Flags (in each byte's high bit) the bytes of an eight-byte chunk that
/// end a run of plain JSON string bytes: `"`, `\\` or a control character.
/// A borrow can also flag bytes above a flagged one, never below, so the
/// lowest flag is exact. Eight bytes at a time (SWAR): stored text is short
/// runs between escapes, which a byte loop crawls through one branch per
/// byte.
fn special(chunk: &[u8; 8]) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let w = u64::from_le_bytes(*chunk);
    let quote = w ^ (LO * u64::from(b'"'));
    let slash = w ^ (LO * u64::from(b'\\'));
    ((quote.wrapping_sub(LO) & !quote)
        | (slash.wrapping_sub(LO) & !slash)
        | (w.wrapping_sub(LO * 0x20) & !w))
        & HI
}

/// The eight bytes at `at`, if there are that many.
fn chunk_at(bytes: &[u8], at: usize) -> Option<&[u8; 8]> {
    bytes.get(at..at.checked_add(8)?)?.try_into().ok()
}

fn is_special(b: &u8) -> bool {
    *b == b'"' || *b == b'\\' || *b < 0x20
}

/// The index of the first byte at or after `from` that [`special`] flags,
/// or `None` if there is none.
fn next_special(bytes: &[u8], mut from: usize) -> Option<usize> {
    while let Some(chunk) = chunk_at(bytes, from) {
        let flags = special(chunk);
        if flags != 0 {
            return Some(from + (flags.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    let tail = bytes.get(from..)?;
    tail.iter().position(is_special).map(|k| from + k)
}

/// A JSON string's contents (the opening quote already read) decoded
/// into `out` from index `w`, with the simple escapes pynenc's
/// `json.dumps` writes for the JSON text inside an argument (`\\"`,
/// `\\\\`, `\\/`, `\\b`, `\\f`, `\\n`, `\\r`, `\\t`); returns the index
/// after the decoded text, or `None` on a `\\u` escape, a raw control
/// character or no closing quote, for serde_json to read or refuse.
///
/// `out` is as long as the whole text and decoding only shrinks, so the
/// write index never passes the read index: a run is copied a whole
/// chunk at a time (one fixed-size store, not a call per short run, with
/// no capacity to check), and the bytes past the run's end are written
/// over next. Only the last few bytes of the text go one at a time.
fn unescape_onto(r: &mut Exact<'_>, out: &mut [u8], mut w: usize) -> Option<usize> {
    let bytes = r.rest;
    let mut i = 0;
    while let (Some(chunk), Some(dst)) = (chunk_at(bytes, i), out.get_mut(w..w + 8)) {
        dst.copy_from_slice(chunk);
        let flags = special(chunk);
        if flags == 0 {
            i += 8;
            w += 8;
            continue;
        }
        let k = (flags.trailing_zeros() / 8) as usize;
        i += k;
        w += k;
        match chunk[k] {
            b'"' => {
                r.rest = &bytes[i + 1..];
                return Some(w);
            }
            b'\\' => {
                *out.get_mut(w)? = unescape(*bytes.get(i + 1)?)?;
                w += 1;
                i += 2;
            }
            _ => return None,
        }
    }
    // The last few bytes, one at a time.
    loop {
        match *bytes.get(i)? {
            b'"' => {
                r.rest = &bytes[i + 1..];
                return Some(w);
            }
            b'\\' => {
                *out.get_mut(w)? = unescape(*bytes.get(i + 1)?)?;
                i += 2;
            }
            c if c < 0x20 => return None,
            c => {
                *out.get_mut(w)? = c;
                i += 1;
            }
        }
        w += 1;
    }
}

/// The byte a simple escape (`\\` and this byte) stands for; `None` for
/// `\\u` (left to serde_json) and anything that is not an escape.
fn unescape(c: u8) -> Option<u8> {
    Some(match c {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    })
}

/// The arguments object as `json.dumps` writes it (`{"name": "value", …}`,
/// its default separators, names unique), read without serde into the
/// packed form; `None` for any other spacing, a non-string value, a `\\u`
/// escape, a repeated name or trailing text, for serde_json to read or
/// refuse.
pub(crate) fn fast_arguments(text: &[u8]) -> Option<Packed> {
    let mut r = Exact { rest: text };
    r.lit("{")?;
    // Decoding only shrinks: the text's length is room for every byte.
    let mut buf = vec![0; text.len()];
    let mut w = 0;
    // Room for four pairs (most tasks take fewer).
    let mut bounds = Vec::with_capacity(1 + 2 * 4);
    if r.lit("}").is_none() {
        bounds.push(0);
        loop {
            r.lit("\"")?;
            w = unescape_onto(&mut r, &mut buf, w)?;
            let start = bounds.last().copied().unwrap_or_default();
            if Packed::find_in(&buf, &bounds, buf.get(start..w)?).is_some() {
                return None;
            }
            bounds.push(w);
            r.lit(": \"")?;
            w = unescape_onto(&mut r, &mut buf, w)?;
            bounds.push(w);
            if r.lit(", ").is_none() {
                r.lit("}")?;
                break;
            }
        }
    }
    if !r.rest.is_empty() {
        return None;
    }
    buf.truncate(w);
    // Checked here, once: the text's bytes were only copied and matched.
    // Each name and value must be UTF-8 on its own, not only together: a
    // bound inside a character is refused.
    let text = String::from_utf8(buf).ok()?;
    if !bounds.iter().all(|&b| text.is_char_boundary(b)) {
        return None;
    }
    Some(Packed::from_parts(text, bounds))
}

#[derive(serde::Deserialize)]
pub(crate) struct WireStatus<'a> {
    #[serde(borrow)]
    pub(crate) status: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) runner_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) timestamp: std::borrow::Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dto::{InvocationHistory, SerializedArguments};

    /// The arguments fast path and serde_json read every text alike: what
    /// `to_json` writes takes the fast path; other spacing, `\u` escapes,
    /// control characters, non-string values and trailing text fall back,
    /// and both give the same pairs or both refuse.
    #[test]
    fn arguments_fast_path_reads_as_serde_does() {
        let cases = [
            r#"{}"#,
            r#"{"a": "1"}"#,
            r#"{"order_id": "100001", "customer": "\"customer-0001\"", "items": "[{\"sku\": \"SKU-0007\", \"qty\": 2}]"}"#,
            r#"{"a": "x\\y\/z\n\t\r\b\f"}"#,
            r#"{"a": "1", "a": "2", "b": "3"}"#,
            r#"{"a":"1"}"#,
            r#"{"a": "\u00e9"}"#,
            r#"{"a": "\ud800"}"#,
            r#"{"a": 1}"#,
            r#"{"a": "1"} "#,
            r#"{"a": "1"}x"#,
            r#"{"a": "1",}"#,
            r#"{"a": "x\qy"}"#,
            "{\"a\": \"x\u{1}\"}",
            r#"{"a": "1""#,
            r#"["a"]"#,
            r#"{"é": "ü"}"#,
        ];
        let mut fast = 0;
        for text in cases {
            let ours = SerializedArguments::from_json(text).ok();
            let serde = SerializedArguments::from_json_serde(text).ok();
            assert_eq!(ours, serde, "{text}");
            fast += usize::from(fast_arguments(text.as_bytes()).is_some());
        }
        assert_eq!(
            fast, 5,
            "the json.dumps-shaped cases with unique names take the fast path"
        );
        let args = SerializedArguments::from_json(cases[2]).unwrap();
        assert_eq!(args.get("customer"), Some("\"customer-0001\""));
        assert_eq!(args.to_json(), cases[2], "round trip");
        let dup = SerializedArguments::from_json(cases[4]).unwrap();
        assert_eq!(dup.iter().collect::<Vec<_>>(), [("a", "2"), ("b", "3")]);
    }

    proptest::proptest! {
        /// The eight-bytes-at-a-time search finds the byte a byte loop
        /// finds, wherever it falls in a chunk, next to bytes above 0x7f
        /// (which a borrow in the bit trick could misflag) or none.
        #[test]
        fn next_special_finds_what_a_byte_loop_finds(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff]),
                    proptest::num::u8::ANY,
                    proptest::sample::select(vec![b'a', b'z', b'0']),
                ],
                0..40,
            ),
            from in 0usize..44,
        ) {
            let naive = bytes.get(from..).and_then(|t| t.iter().position(is_special).map(|k| from + k));
            proptest::prop_assert_eq!(next_special(&bytes, from), naive);
        }

        /// Arguments of any names and values, written as `to_json` writes
        /// them, read back to the same pairs through the fast path or the
        /// fallback, and both readers agree.
        #[test]
        fn arguments_round_trip_through_both_readers(
            pairs in proptest::collection::vec(
                ("[a-c\"\\\\/]{0,3}", "[a-z0-9 \"\\\\/\n\t\r\u{1}\u{8}\u{c}é€{}:,\\[\\]]{0,30}"),
                0..6,
            ),
        ) {
            let args = SerializedArguments::from_pairs(pairs.iter().map(|(k, v)| (k, v)));
            let text = args.to_json();
            proptest::prop_assert_eq!(SerializedArguments::from_json(&text).ok(), Some(args.clone()));
            proptest::prop_assert_eq!(SerializedArguments::from_json_serde(&text).ok(), Some(args));
        }
    }

    /// The exact-shape reader and serde_json read every text alike: the
    /// shape `to_json` writes is taken by the fast path, anything else
    /// (spacing, key order, escapes, control characters, trailing text)
    /// falls back, and both give the same record or both refuse.
    #[test]
    fn history_fast_path_reads_as_serde_does() {
        fn serde_only(text: &str) -> Option<InvocationHistory> {
            let w: WireHistory<'_> = serde_json::from_str(text).ok()?;
            InvocationHistory::from_json(&serde_json::to_string(&serde_json::json!({
                "invocation_id": w.invocation_id,
                "_timestamp": w.timestamp,
                "status_record": {"status": w.status_record.status,
                    "runner_id": w.status_record.runner_id, "timestamp": w.status_record.timestamp},
                "runner_context_id": w.runner_context_id,
                "registered_by_inv_id": w.registered_by_inv_id,
            })).ok()?)
            .ok()
        }
        let base = r#"{"invocation_id": "i-1", "_timestamp": "2025-01-15T12:00:00.654321+00:00", "status_record": {"status": "pending", "runner_id": "r-1", "timestamp": "2025-01-15T12:00:00.654321+00:00"}, "runner_context_id": "r-1", "registered_by_inv_id": null}"#;
        assert!(fast_history(base.as_bytes(), &mut RecentIds::default()).is_some());
        let variants = [
            base.to_owned(),
            base.replace(r#""runner_id": "r-1""#, r#""runner_id": null"#),
            base.replace(
                r#""registered_by_inv_id": null"#,
                r#""registered_by_inv_id": "p""#,
            ),
            base.replace(
                r#""status_record": {"status": "pending""#,
                r#""status_record": {"status": "running""#,
            ),
            base.replace(": ", ":"),
            base.replace("i-1", r"i-\u00e9"),
            base.replace("i-1", "i-\n"),
            base.replace("i-1", "i\u{1}"),
            format!("{base} "),
            format!("{base}x"),
            base.replace(
                r#"T12:00:00.654321+00:00", "status_record""#,
                r#"T13:00:00+01:00", "status_record""#,
            ),
            base.replace(
                r#"{"invocation_id": "i-1", "_timestamp""#,
                r#"{"_timestamp""#,
            ),
        ];
        let (mut read, mut fast_read) = (0, 0);
        for text in &variants {
            let fast = InvocationHistory::from_json(text).ok();
            assert_eq!(fast, serde_only(text), "{text}");
            read += usize::from(fast.is_some());
            let direct = fast_history(text.as_bytes(), &mut RecentIds::default());
            if let Some(direct) = &direct {
                assert_eq!(Some(direct), fast.as_ref(), "{text}");
            }
            fast_read += usize::from(direct.is_some());
        }
        assert_eq!(read, 8, "the valid variants read");
        assert_eq!(
            fast_read, 5,
            "the valid json.dumps-shaped variants take the fast path"
        );
        // A record written by to_json takes the fast path and reads back.
        let h = InvocationHistory::from_json(&variants[2]).unwrap();
        assert!(fast_history(h.to_json().as_bytes(), &mut RecentIds::default()).is_some());
        assert_eq!(InvocationHistory::from_json(&h.to_json()).unwrap(), h);
    }

    /// Stored bytes that are not UTF-8 are refused wherever they are
    /// (the fast paths check only the strings they keep), and a name and
    /// value that are UTF-8 only together are refused too: nothing panics
    /// and nothing invalid is kept.
    #[test]
    fn stored_bytes_that_are_not_utf8_are_refused() {
        let base = br#"{"invocation_id": "i-1", "_timestamp": "2025-01-15T12:00:00.654321+00:00", "status_record": {"status": "pending", "runner_id": "r-1", "timestamp": "2025-01-15T12:00:00.654321+00:00"}, "runner_context_id": "r-1", "registered_by_inv_id": null}"#;
        let at = |needle: &[u8]| {
            base.windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        for k in [
            at(b"i-1"),
            at(b"pending"),
            at(b"2025"),
            at(b"r-1\", \"registered"),
            at(b"null"),
        ] {
            for bad in [0xff_u8, 0xc3, 0x80] {
                let mut text = base.to_vec();
                text[k] = bad;
                let err = InvocationHistory::from_stored_json(&text, &mut RecentIds::default());
                assert!(err.is_err(), "byte {bad:#x} at {k}: {err:?}");
            }
        }
        let err = InvocationHistory::from_stored_json(
            b"{\"invocation_id\": \"\xff\"}",
            &mut RecentIds::default(),
        )
        .unwrap_err();
        assert!(err.contains("not UTF-8"), "{err}");
        // Each of the four strings is invalid, the text they make is not.
        for text in [
            &b"{\"a\xc3\": \"\xa9b\"}"[..],
            b"{\"a\": \"b\xc3\", \"\xa9\": \"c\"}",
            b"{\"a\": \"\xff\"}",
            b"{\"a\": \"x\xc3\\n\"}",
        ] {
            assert!(fast_arguments(text).is_none(), "{text:?}");
            let err = SerializedArguments::from_stored_json(text).unwrap_err();
            assert!(err.contains("not UTF-8"), "{err}");
        }
        assert_eq!(
            SerializedArguments::from_stored_json("{\"é\": \"ü\\n\"}".as_bytes())
                .unwrap()
                .get("é"),
            Some("ü\n")
        );
    }
}
