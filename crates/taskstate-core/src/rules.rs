//! The contract's input rules (SPEC §4) and the read rules engines share:
//! each is code here, run for every engine by [`crate::engine`]'s blanket
//! `StateBackend` implementation, so no engine can apply its own variant.

use crate::backend::HistoryRow;
use crate::dto::{
    AppInfo, CallDTO, InvocationDTO, InvocationHistory, RunnerContext, WorkflowIdentity,
};
use crate::error::{Error, Result};
use crate::ids::{InvocationId, RunnerId};
use crate::time::Timestamp;

/// The longest id (invocation, runner, app id, task key, workflow-data key)
/// any engine accepts, in bytes. Ids are keys of indexes: a server engine's
/// index entries are bounded (PostgreSQL's B-tree takes at most ~2.7 kB per
/// entry, and some keys hold two ids), so every engine refuses longer ids
/// alike. Values (results, arguments, data) have no such limit.
pub const MAX_ID_BYTES: usize = 1024;

/// Length rule for an id or key that engines index: at most
/// [`MAX_ID_BYTES`] bytes.
pub fn check_id(what: &str, id: &str) -> Result<()> {
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(format!(
            "{what} is {} bytes; ids and keys are at most {MAX_ID_BYTES} bytes",
            id.len()
        )));
    }
    Ok(())
}

fn non_empty(what: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    check_id(what, id)
}

/// Input rules for an (invocation, call) pair, shared by every engine so
/// they refuse exactly the same input: no empty ids (the reference reads an
/// empty parent id back as none), and the invocation's call id must equal the
/// call's (the file format stores it once).
pub fn check_invocation_pair(inv: &InvocationDTO, call: &CallDTO) -> Result<()> {
    non_empty("invocation_id", inv.invocation_id.as_str())?;
    check_id("task key", call.call_id.task_id().key())?;
    if inv.call_id != call.call_id {
        return Err(Error::invalid(format!(
            "invocation {:?}: its call id {:?} differs from its call's {:?}",
            inv.invocation_id.as_str(),
            inv.call_id.key(),
            call.call_id.key()
        )));
    }
    if let Some(p) = &inv.parent_invocation_id {
        non_empty("parent_invocation_id", p.as_str())?;
    }
    check_workflow(&inv.workflow)
}

/// Input rules for a workflow identity: non-empty ids.
pub fn check_workflow(wf: &WorkflowIdentity) -> Result<()> {
    non_empty("workflow_id", wf.workflow_id.as_str())?;
    check_id("workflow type key", wf.workflow_type.key())?;
    if let Some(p) = &wf.parent_workflow_id {
        non_empty("parent_workflow_id", p.as_str())?;
    }
    Ok(())
}

/// What the reference can read back (SPEC §6): a timestamp whose date, in
/// UTC or in its own offset, falls in years 1–9999 (Python's `datetime`
/// holds nothing else; pynenc 0.1.0 fails reading "year 0 is out of range").
///
/// ```
/// use taskstate_core::{Timestamp, engine::check_timestamp};
/// let ok: Timestamp = "0001-01-01T00:00:00+00:00".parse().unwrap();
/// assert!(check_timestamp("t", &ok).is_ok());
/// // 00:30 at +01:00 on 1 January of year 1 is still year 0 in UTC.
/// let early: Timestamp = "0001-01-01T00:30:00+01:00".parse().unwrap();
/// assert!(check_timestamp("t", &early).is_err());
/// ```
pub fn check_timestamp(what: &str, t: &Timestamp) -> Result<()> {
    match t.in_years_1_to_9999() {
        true => Ok(()),
        false => Err(Error::invalid(format!(
            "{what} {t} is outside years 1-9999 (in UTC or its own offset), \
             which pynenc cannot read back"
        ))),
    }
}

/// Input rules for a history record: non-empty invocation id and, when set,
/// a non-empty registered-by id; timestamps pynenc can read back.
pub fn check_history(h: &InvocationHistory) -> Result<()> {
    non_empty("history invocation_id", h.invocation_id.as_str())?;
    check_timestamp("history _timestamp", &h.timestamp)?;
    check_timestamp("status record timestamp", &h.status_record.timestamp)?;
    if let Some(r) = &h.registered_by_inv_id {
        non_empty("registered_by_inv_id", r.as_str())?;
    }
    Ok(())
}

/// Input rules for a history row: a non-empty key within the id limit, and
/// the record's own rules ([`check_history`]).
pub fn check_history_row(row: &HistoryRow<'_>) -> Result<()> {
    non_empty("history key", row.key.as_str())?;
    if let Some(k) = row.time_key
        && !k.seconds().is_finite()
    {
        return Err(Error::invalid(format!(
            "history of {:?}: time key {} is not finite",
            row.key.as_str(),
            k.seconds()
        )));
    }
    check_history(row.record)
}

/// Input rules for a runner context: non-empty runner ids in the chain, and
/// no runner id repeated in it (a cycle could never be read back).
pub fn check_runner_context(ctx: &RunnerContext) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for c in ctx.chain() {
        non_empty("runner_id", c.runner_id.as_str())?;
        if !seen.insert(c.runner_id.as_str()) {
            return Err(Error::invalid(format!(
                "runner context {:?}: runner id {:?} appears twice in its parent chain",
                ctx.runner_id.as_str(),
                c.runner_id.as_str()
            )));
        }
    }
    Ok(())
}

/// Input rule for the id of a result or exception being set.
pub fn check_invocation_id(id: &InvocationId) -> Result<()> {
    check_id("invocation id", id.as_str())
}

/// Input rules for a workflow sub-invocation link.
pub fn check_sub_invocation(
    workflow_id: &InvocationId,
    sub_invocation: &InvocationId,
) -> Result<()> {
    check_id("workflow id", workflow_id.as_str())?;
    check_id("sub-invocation id", sub_invocation.as_str())
}

/// Input rules for a workflow data entry (its workflow id and key).
pub fn check_workflow_data(workflow_id: &InvocationId, key: &str) -> Result<()> {
    check_id("workflow id", workflow_id.as_str())?;
    check_id("workflow data key", key)
}

/// Input rules for an app info (its app id).
pub fn check_app_info(info: &AppInfo) -> Result<()> {
    check_id("app id", info.app_id.as_str())
}

/// Page-size rule: at least 1.
pub fn check_page_size(page_size: usize) -> Result<()> {
    if page_size == 0 {
        return Err(Error::invalid("page size must be at least 1"));
    }
    Ok(())
}

/// Runner-context search rule (SPEC §4 rule 6): `partial` occurs in `id` as
/// a literal substring, ignoring ASCII case.
///
/// ```
/// use taskstate_core::engine::runner_id_matches;
/// assert!(runner_id_matches("runner-MAIN-7f3a", "main-7F3A"));
/// assert!(!runner_id_matches("runner-1", "r%1"));
/// assert!(runner_id_matches("any", ""));
/// ```
#[must_use]
pub fn runner_id_matches(id: &str, partial: &str) -> bool {
    let (h, n) = (id.as_bytes(), partial.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Follows `parent_of` links from `start` to rebuild a context's chain,
/// refusing a missing parent and a cycle as corrupt data (SPEC §3).
///
/// `load(id)` returns the stored row as (context without parent, parent id).
pub fn resolve_runner_chain(
    location: &str,
    start: (RunnerContext, Option<RunnerId>),
    mut load: impl FnMut(&RunnerId) -> Result<Option<(RunnerContext, Option<RunnerId>)>>,
) -> Result<RunnerContext> {
    let mut chain = vec![start.0];
    let mut next = start.1;
    while let Some(parent_id) = next {
        if chain.iter().any(|c| c.runner_id == parent_id) {
            return Err(Error::corrupt(
                format!("{location}[{}]", chain[0].runner_id),
                format!(
                    "runner context parent chain has a cycle at {:?}",
                    parent_id.as_str()
                ),
            ));
        }
        let Some((ctx, grand)) = load(&parent_id)? else {
            let child = chain
                .last()
                .map(|c| c.runner_id.as_str())
                .unwrap_or_default();
            return Err(Error::corrupt(
                format!("{location}[{child}]"),
                format!(
                    "runner context {child:?} names parent {:?}, which is not stored",
                    parent_id.as_str()
                ),
            ));
        };
        chain.push(ctx);
        next = grand;
    }
    let mut ctx = chain.pop();
    while let Some(mut child) = chain.pop() {
        child.parent = ctx.map(Box::new);
        ctx = Some(child);
    }
    ctx.ok_or_else(|| Error::corrupt(location, "empty runner context chain"))
}
