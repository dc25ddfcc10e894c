//! What the bench measures: any [`StateBackend`] through the trait, or a
//! raw baseline issuing the same SQL, behind one [`BenchTarget`] interface.

use taskstate_core::{DEFAULT_PAGE_SIZE, InvocationHistory, InvocationId, Result, StateBackend};

use super::Workload;

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

/// The operations an engine under test offers the bench: the trait's, or
/// raw SQL for the baseline.
pub trait BenchTarget: Sync {
    /// Upserts invocation `i`.
    fn upsert(&self, w: &Workload, i: usize) -> Result<()>;
    /// Adds history record `r`.
    fn add_history(&self, w: &Workload, r: usize) -> Result<()>;
    /// Sets result `i`.
    fn set_result(&self, w: &Workload, i: usize) -> Result<()>;
    /// Reads invocation `i` back; true when it equals the input.
    fn check_invocation(&self, w: &Workload, i: usize) -> Result<bool>;
    /// Reads the history of invocation `i`; true when it is the 3 records.
    fn check_history(&self, w: &Workload, i: usize) -> Result<bool>;
    /// Reads result `i`; true when equal.
    fn check_result(&self, w: &Workload, i: usize) -> Result<bool>;
    /// Reads children of invocation `i`; true when equal.
    fn check_children(&self, w: &Workload, i: usize) -> Result<bool>;
    /// Full scan of ids in the workload range; the ids, in order.
    fn scan_ids(&self, w: &Workload) -> Result<Vec<String>>;
    /// Full scan of history in the workload range.
    fn scan_history(&self, w: &Workload) -> Result<Scanned>;
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
    fn check_invocation(&self, w: &Workload, i: usize) -> Result<bool> {
        Ok(self.get_invocation(&w.pairs[i].0.invocation_id)? == w.pairs[i])
    }
    fn check_history(&self, w: &Workload, i: usize) -> Result<bool> {
        Ok(self.get_history(&w.pairs[i].0.invocation_id)? == w.histories[3 * i..3 * i + 3])
    }
    fn check_result(&self, w: &Workload, i: usize) -> Result<bool> {
        Ok(self.get_result(&w.pairs[i].0.invocation_id)? == w.results[i])
    }
    fn check_children(&self, w: &Workload, i: usize) -> Result<bool> {
        Ok(self.get_child_invocations(&w.pairs[i].0.invocation_id)? == w.children[i])
    }
    fn scan_ids(&self, w: &Workload) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for page in self.iter_invocations_in_timerange(w.range, DEFAULT_PAGE_SIZE) {
            out.extend(page?.into_iter().map(InvocationId::into_string));
        }
        Ok(out)
    }
    fn scan_history(&self, w: &Workload) -> Result<Scanned> {
        let mut out = Vec::new();
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

    /// Whether the columns of `GET_INVOCATION` read back for invocation `i`
    /// (call key, arguments, parent, workflow id, type, parent workflow)
    /// are what was written.
    pub(crate) fn invocation_matches(&self, i: usize, got: &[Option<String>; 6]) -> bool {
        let p = &self.inv[i];
        got.iter()
            .zip([&p[1], &p[4], &p[5], &p[6], &p[7], &p[8]])
            .all(|(g, w)| g == w)
    }

    /// Whether the history JSON read back for invocation `i` is its three
    /// records, in order.
    pub(crate) fn history_matches(&self, i: usize, got: &[String]) -> bool {
        got.len() == 3 && got.iter().zip(&self.hist[3 * i..]).all(|(g, h)| *g == h.4)
    }
}

/// Whether the child ids read back for invocation `i` are the expected ones.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn children_match(w: &Workload, i: usize, got: &[String]) -> bool {
    got.iter()
        .map(String::as_str)
        .eq(w.children[i].iter().map(InvocationId::as_str))
}
