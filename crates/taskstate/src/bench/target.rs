//! What the bench measures: any [`StateBackend`] through the trait, or a
//! raw baseline issuing the same SQL, behind one [`BenchTarget`] interface.

use taskstate_core::{
    DEFAULT_PAGE_SIZE, InvocationHistory, InvocationId, InvocationRecord, Result, SharedText,
    StateBackend,
};

use super::{Op, Workload};

/// What a full history scan returned: decoded records (engines) or the
/// stored JSON text (raw baselines, which do not decode). Compared with
/// the workload only after timing.
#[derive(Debug)]
pub enum Scanned {
    /// Records, as an engine returns them.
    Records(Vec<InvocationHistory>),
    /// JSON text, as the raw baselines read it.
    Json(Vec<String>),
}

impl Scanned {
    /// Number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Scanned::Records(r) => r.len(),
            Scanned::Json(j) => j.len(),
        }
    }

    /// Whether nothing was returned.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether these are exactly the workload's records, in order.
    #[must_use]
    pub fn matches(&self, w: &Workload) -> bool {
        self.len() == w.histories.len()
            && match self {
                Scanned::Records(r) => r[..] == w.histories[..],
                Scanned::Json(j) => j
                    .iter()
                    .zip(&w.histories)
                    .all(|(got, want)| *got == want.to_json()),
            }
    }
}

/// What a full id scan returned: the ids as an engine returns them, or
/// the strings a raw baseline reads. Each side keeps its own output, as
/// for the history scan: converting an engine's ids to strings cost it a
/// copy per id that the baseline does not make.
#[derive(Debug)]
pub enum ScannedIds {
    /// Ids, as an engine returns them.
    Ids(Vec<InvocationId>),
    /// One string per row, as the raw baselines read them.
    Strings(Vec<String>),
}

impl ScannedIds {
    /// Number of ids.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            ScannedIds::Ids(i) => i.len(),
            ScannedIds::Strings(s) => s.len(),
        }
    }

    /// Whether nothing was returned.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether these are exactly `want`, in order.
    #[must_use]
    pub fn matches(&self, want: &[InvocationId]) -> bool {
        match self {
            ScannedIds::Ids(i) => i[..] == *want,
            ScannedIds::Strings(s) => {
                s.len() == want.len() && s.iter().zip(want).all(|(a, b)| a == b.as_str())
            }
        }
    }
}

/// What one point read returned, kept to be checked after the timing (as
/// the Python reference checks its outputs): engines return records, the
/// raw baselines the columns they read, as strings.
#[derive(Debug)]
pub enum Read {
    /// An invocation and its call, as an engine returns them.
    Invocation(InvocationRecord),
    /// The six columns of `GET_INVOCATION`, as the raw baselines read them
    /// (boxed, so every other output stays small to keep).
    Columns(Box<[Option<String>; 6]>),
    /// History records, as an engine returns them.
    History(Vec<InvocationHistory>),
    /// A result, as an engine returns it.
    Text(SharedText),
    /// Child ids, as an engine returns them.
    Ids(Vec<InvocationId>),
    /// One string column per row (raw baselines: history JSON, a result,
    /// child ids).
    Strings(Vec<String>),
}

/// The operations an engine under test offers the bench: the trait's, or
/// raw SQL for the baseline. Point reads return what they read; the bench
/// times the reads and checks their outputs afterwards with
/// [`BenchTarget::read_matches`].
pub trait BenchTarget: Sync {
    /// Upserts invocation `i`.
    fn upsert(&self, w: &Workload, i: usize) -> Result<()>;
    /// Adds history record `r`.
    fn add_history(&self, w: &Workload, r: usize) -> Result<()>;
    /// Sets result `i`.
    fn set_result(&self, w: &Workload, i: usize) -> Result<()>;
    /// Reads invocation `i` back.
    fn read_invocation(&self, w: &Workload, i: usize) -> Result<Read>;
    /// Reads the history of invocation `i`.
    fn read_history(&self, w: &Workload, i: usize) -> Result<Read>;
    /// Reads result `i`.
    fn read_result(&self, w: &Workload, i: usize) -> Result<Read>;
    /// Reads the children of invocation `i`.
    fn read_children(&self, w: &Workload, i: usize) -> Result<Read>;
    /// Whether `got`, what point read `op` returned for item `i`, is what
    /// the workload wrote: the invocation, its 3 history records in
    /// order, its result, its children ascending.
    fn read_matches(&self, w: &Workload, op: Op, i: usize, got: &Read) -> bool;
    /// Full scan of ids in the workload range; the ids, in order.
    fn scan_ids(&self, w: &Workload) -> Result<ScannedIds>;
    /// Full scan of history in the workload range.
    fn scan_history(&self, w: &Workload) -> Result<Scanned>;
}

/// Whether an engine's read `got` of item `i` for `op` is what the
/// workload wrote.
pub(crate) fn engine_read_matches(w: &Workload, op: Op, i: usize, got: &Read) -> bool {
    match (op, got) {
        (Op::GetInvocation, Read::Invocation(p)) => **p == w.pairs[i],
        (Op::GetHistory, Read::History(h)) => h[..] == w.histories[3 * i..3 * i + 3],
        (Op::GetResult, Read::Text(r)) => *r == w.results[i],
        (Op::GetChildInvocations, Read::Ids(c)) => *c == w.children[i],
        _ => false,
    }
}

impl<B: StateBackend + ?Sized> BenchTarget for B {
    fn upsert(&self, w: &Workload, i: usize) -> Result<()> {
        self.upsert_invocations(std::slice::from_ref(&w.pairs[i]))
    }
    fn add_history(&self, w: &Workload, r: usize) -> Result<()> {
        self.add_histories(std::slice::from_ref(&w.histories[r]))
    }
    fn set_result(&self, w: &Workload, i: usize) -> Result<()> {
        StateBackend::set_result(self, &w.pairs[i].0.invocation_id, &w.results[i])
    }
    fn read_invocation(&self, w: &Workload, i: usize) -> Result<Read> {
        self.get_invocation(&w.pairs[i].0.invocation_id)
            .map(Read::Invocation)
    }
    fn read_history(&self, w: &Workload, i: usize) -> Result<Read> {
        self.get_history(&w.pairs[i].0.invocation_id)
            .map(Read::History)
    }
    fn read_result(&self, w: &Workload, i: usize) -> Result<Read> {
        self.get_result(&w.pairs[i].0.invocation_id).map(Read::Text)
    }
    fn read_children(&self, w: &Workload, i: usize) -> Result<Read> {
        self.get_child_invocations(&w.pairs[i].0.invocation_id)
            .map(Read::Ids)
    }
    fn read_matches(&self, w: &Workload, op: Op, i: usize, got: &Read) -> bool {
        engine_read_matches(w, op, i, got)
    }
    fn scan_ids(&self, w: &Workload) -> Result<ScannedIds> {
        // Sized for the workload, here and in the raw baselines: the scan
        // is measured, not the growth of the bench's own list.
        let mut out = Vec::with_capacity(w.n());
        for page in self.iter_invocations_in_timerange(w.range, DEFAULT_PAGE_SIZE) {
            out.extend(page?);
        }
        Ok(ScannedIds::Ids(out))
    }
    fn scan_history(&self, w: &Workload) -> Result<Scanned> {
        let mut out = Vec::with_capacity(w.histories.len());
        for page in self.iter_history_in_timerange(w.range, DEFAULT_PAGE_SIZE) {
            out.extend(page?);
        }
        Ok(Scanned::Records(out))
    }
}

/// Parameters of every write, encoded before timing (the raw baselines
/// bind them as they are).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) struct Encoded {
    pub(crate) inv: Vec<[Option<String>; 9]>,
    /// (id, ts_key seconds, µs, status, json)
    pub(crate) hist: Vec<(String, f64, i64, &'static str, String)>,
}

#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
impl Encoded {
    pub(crate) fn new(w: &Workload) -> Self {
        let inv = w
            .pairs
            .iter()
            .map(|(i, c)| {
                [
                    Some(i.invocation_id.as_str().to_owned()),
                    Some(c.call_id.key().to_owned()),
                    Some(c.call_id.task_id().key().to_owned()),
                    Some(c.call_id.args_id().to_owned()),
                    Some(c.serialized_arguments.to_json()),
                    i.parent_invocation_id
                        .as_ref()
                        .map(|p| p.as_str().to_owned()),
                    Some(i.workflow.workflow_id.as_str().to_owned()),
                    Some(i.workflow.workflow_type.key().to_owned()),
                    i.workflow
                        .parent_workflow_id
                        .as_ref()
                        .map(|p| p.as_str().to_owned()),
                ]
            })
            .collect();
        let hist = w
            .histories
            .iter()
            .map(|h| {
                (
                    h.invocation_id.as_str().to_owned(),
                    h.timestamp.key().seconds(),
                    h.timestamp.micros(),
                    h.status_record.status.as_str(),
                    h.to_json(),
                )
            })
            .collect();
        Self { inv, hist }
    }

    /// Whether a raw baseline's read `got` of item `i` for `op` is what
    /// the workload wrote: the columns of `GET_INVOCATION` (call key,
    /// arguments, parent, workflow id, type, parent workflow), the three
    /// history JSON texts in order, the result, the child ids ascending.
    pub(crate) fn read_matches(&self, w: &Workload, op: Op, i: usize, got: &Read) -> bool {
        match (op, got) {
            (Op::GetInvocation, Read::Columns(got)) => {
                let p = &self.inv[i];
                got.iter()
                    .zip([&p[1], &p[4], &p[5], &p[6], &p[7], &p[8]])
                    .all(|(g, w)| g == w)
            }
            (Op::GetHistory, Read::Strings(got)) => {
                got.len() == 3 && got.iter().zip(&self.hist[3 * i..]).all(|(g, h)| *g == h.4)
            }
            (Op::GetResult, Read::Strings(got)) => got.len() == 1 && got[0] == w.results[i],
            (Op::GetChildInvocations, Read::Strings(got)) => got
                .iter()
                .map(String::as_str)
                .eq(w.children[i].iter().map(InvocationId::as_str)),
            _ => false,
        }
    }
}
