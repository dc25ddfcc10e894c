//! Moving all state from one engine to another, in batches, and counting
//! what a store holds (to verify a copy).

use std::collections::BTreeSet;

use taskstate_core::{Error, HistoryRow, InvocationId, Result, StateBackend, TimeRange};

use crate::export::{Progress, history_ids, is_empty};

/// How many records of each kind a store holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Invocations.
    pub invocations: u64,
    /// History records.
    pub history: u64,
    /// Results.
    pub results: u64,
    /// Exceptions.
    pub exceptions: u64,
    /// Workflow runs.
    pub workflow_runs: u64,
    /// Workflow sub-invocation links.
    pub sub_invocations: u64,
    /// Workflow data entries.
    pub workflow_data: u64,
    /// App infos.
    pub app_infos: u64,
    /// Runner contexts.
    pub runner_contexts: u64,
}

impl Counts {
    /// (name, count) pairs, for tables.
    #[must_use]
    pub fn rows(&self) -> [(&'static str, u64); 9] {
        [
            ("invocations", self.invocations),
            ("history records", self.history),
            ("results", self.results),
            ("exceptions", self.exceptions),
            ("workflow runs", self.workflow_runs),
            ("workflow sub-invocations", self.sub_invocations),
            ("workflow data", self.workflow_data),
            ("app infos", self.app_infos),
            ("runner contexts", self.runner_contexts),
        ]
    }
}

/// Counts everything `b` stores (whole-store scans).
pub fn counts(b: &dyn StateBackend) -> Result<Counts> {
    let mut history = 0u64;
    for page in b.iter_history_in_timerange(TimeRange::all(), 1000) {
        history += page?.len() as u64;
    }
    Ok(Counts {
        invocations: b.get_invocation_ids_by_workflow(None, None)?.len() as u64,
        history,
        results: b.result_ids()?.len() as u64,
        exceptions: b.exception_ids()?.len() as u64,
        workflow_runs: b.get_all_workflow_runs()?.len() as u64,
        sub_invocations: b.all_workflow_sub_invocations()?.len() as u64,
        workflow_data: b.all_workflow_data()?.len() as u64,
        app_infos: b.discover_app_infos()?.len() as u64,
        runner_contexts: b.get_matching_runner_contexts("")?.len() as u64,
    })
}

/// Copies everything from `from` into `to` (which must be empty unless
/// `merge`), `batch` invocations per write, then verifies the counts match
/// (when `to` started empty). Returns the source's counts.
pub fn copy(
    from: &dyn StateBackend,
    to: &dyn StateBackend,
    batch: usize,
    merge: bool,
    progress: &mut Progress<'_>,
) -> Result<Counts> {
    let batch = batch.max(1);
    let started_empty = is_empty(to)?;
    if !merge && !started_empty {
        return Err(Error::invalid(
            "the destination store is not empty: copy into an empty store, or merge explicitly",
        ));
    }
    for a in from.discover_app_infos()? {
        to.store_app_info(&a)?;
    }
    for r in from.get_matching_runner_contexts("")? {
        to.store_runner_context(&r)?;
    }
    let ids = from.get_invocation_ids_by_workflow(None, None)?;
    let total = ids.len() as u64;
    for (n, chunk) in ids.chunks(batch).enumerate() {
        let pairs = chunk
            .iter()
            .map(|id| from.get_invocation(id))
            .collect::<Result<Vec<_>>>()?;
        to.upsert_invocations(&pairs)?;
        copy_history(from, to, chunk)?;
        progress(
            "invocations",
            ((n * batch + chunk.len()) as u64).min(total),
            total,
        );
    }
    let stored: BTreeSet<&InvocationId> = ids.iter().collect();
    let orphans: Vec<InvocationId> = history_ids(from)?
        .into_iter()
        .filter(|id| !stored.contains(id))
        .collect();
    for chunk in orphans.chunks(batch) {
        copy_history(from, to, chunk)?;
    }
    let results = from.result_ids()?;
    for (n, id) in results.iter().enumerate() {
        to.set_result(id, &from.get_result(id)?)?;
        if n % 1024 == 0 || n + 1 == results.len() {
            progress("results", n as u64 + 1, results.len() as u64);
        }
    }
    for id in from.exception_ids()? {
        to.set_exception(&id, &from.get_exception(&id)?)?;
    }
    for w in from.get_all_workflow_runs()? {
        to.store_workflow_run(&w)?;
    }
    for (w, s) in from.all_workflow_sub_invocations()? {
        to.store_workflow_sub_invocation(&w, &s)?;
    }
    for (w, k, v) in from.all_workflow_data()? {
        to.set_workflow_data(&w, &k, &v)?;
    }
    let source = counts(from)?;
    if started_empty {
        let dest = counts(to)?;
        if dest != source {
            return Err(Error::Storage {
                message: format!(
                    "copy verification failed: source holds {source:?}, destination {dest:?}"
                ),
                source: None,
            });
        }
    }
    Ok(source)
}

/// Copies the history rows stored under `keys`, each under its key and at
/// its stored time key (SPEC §3: both may differ from the record's own id
/// and instant).
fn copy_history(
    from: &dyn StateBackend,
    to: &dyn StateBackend,
    keys: &[InvocationId],
) -> Result<()> {
    let hist = keys
        .iter()
        .map(|id| from.get_history_rows(id))
        .collect::<Result<Vec<_>>>()?;
    let rows: Vec<HistoryRow<'_>> = keys
        .iter()
        .zip(&hist)
        .flat_map(|(id, h)| {
            h.iter()
                .map(move |r| HistoryRow::under(id, &r.record).at_time_key(r.explicit_time_key()))
        })
        .collect();
    to.add_history_rows(&rows)
}
