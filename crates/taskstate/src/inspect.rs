//! What an operator wants to see in a store, as text reports: counts and
//! recent invocations, one invocation's timeline, one workflow's tree.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use taskstate_core::bulk::for_each_page;
use taskstate_core::{
    Error, InvocationFilter, InvocationHistory, InvocationId, Kind, Result, Row, StateBackend,
    validate_chain,
};

use crate::copy::counts;

fn status_of(h: Option<&InvocationHistory>) -> String {
    h.map_or_else(|| "-".to_owned(), |h| h.status_record.status.to_string())
}

/// Counts per kind and the `recent` invocations with the latest history
/// records, newest first, each with its latest status.
pub fn summary(b: &dyn StateBackend, recent: usize) -> Result<String> {
    let mut out = String::new();
    let c = counts(b)?;
    let _ = writeln!(out, "{:<26} {:>12}", "kind", "count");
    for (name, n) in c.rows() {
        let _ = writeln!(out, "{name:<26} {n:>12}");
    }
    // The `recent` invocations whose latest status changed last: one page
    // of the latest-status listing, an index read at any store size.
    let newest = if recent > 0 {
        b.list_invocations(&InvocationFilter::default(), None, recent)?
            .items
    } else {
        Vec::new()
    };
    let _ = writeln!(out, "\nmost recent invocations (by latest status change):");
    if newest.is_empty() {
        let _ = writeln!(out, "  (no history)");
    }
    for s in newest {
        let at = s.time_key.to_timestamp();
        let status = s.status.map_or("(unknown status)", |st| st.as_str());
        // Read the invocation whole, so a row that cannot be decoded is
        // reported here, never shown as if it were fine.
        let record = b.get_invocation(&s.invocation_id)?;
        let call = &record.1;
        let _ = writeln!(
            out,
            "  {}  {:<28} {:<24} {}",
            at,
            s.invocation_id,
            status,
            call.call_id.task_id().key()
        );
    }
    Ok(out)
}

/// `NotFound` as `None`; every other error (corrupt data, a lost server)
/// stays an error: a stored value that cannot be read is never shown as
/// absent.
pub(crate) fn absent_as_none<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn seconds(micros: i64) -> String {
    format!("{:+.6}s", micros as f64 / 1e6)
}

/// One invocation: its call, workflow, result or exception, children, and
/// its status timeline with the time between steps and whether the chain
/// is valid per the status machine.
pub fn invocation(b: &dyn StateBackend, id: &InvocationId) -> Result<String> {
    let mut out = String::new();
    let record = b.get_invocation(id)?;
    let (inv, call) = &*record;
    let _ = writeln!(out, "invocation  {id}");
    let _ = writeln!(out, "task        {}", call.call_id.task_id());
    let _ = writeln!(out, "call        {}", call.call_id);
    for (k, v) in call.serialized_arguments.iter() {
        let _ = writeln!(out, "  arg {k} = {v}");
    }
    let _ = writeln!(
        out,
        "parent      {}",
        inv.parent_invocation_id
            .as_ref()
            .map_or("-", |p| p.as_str())
    );
    let _ = writeln!(
        out,
        "workflow    {} ({}){}",
        inv.workflow.workflow_id,
        inv.workflow.workflow_type,
        inv.workflow
            .parent_workflow_id
            .as_ref()
            .map(|p| format!(" inside {p}"))
            .unwrap_or_default()
    );
    if let Some(r) = absent_as_none(b.get_result(id))? {
        let _ = writeln!(out, "result      {r}");
    }
    if let Some(e) = absent_as_none(b.get_exception(id))? {
        let _ = writeln!(out, "exception   {e}");
    }
    let children = b.get_child_invocations(id)?;
    let _ = writeln!(out, "children    {}", children.len());
    for c in &children {
        let _ = writeln!(out, "  {c}");
    }
    let history = b.get_history(id)?;
    let _ = writeln!(out, "\ntimeline ({} records):", history.len());
    let mut prev: Option<i64> = None;
    for h in &history {
        let step = prev.map_or_else(|| "".to_owned(), |p| seconds(h.timestamp.micros() - p));
        prev = Some(h.timestamp.micros());
        let _ = writeln!(
            out,
            "  {}  {:>14}  {:<28} runner={} ctx={}{}",
            h.timestamp,
            step,
            h.status_record.status.as_str(),
            h.status_record
                .runner_id
                .as_ref()
                .map_or("-", |r| r.as_str()),
            h.runner_context_id,
            h.registered_by_inv_id
                .as_ref()
                .map(|r| format!(" registered_by={r}"))
                .unwrap_or_default()
        );
    }
    if let (Some(first), Some(last)) = (history.first(), history.last()) {
        let _ = writeln!(
            out,
            "  total {}",
            seconds(last.timestamp.micros() - first.timestamp.micros())
        );
    }
    match validate_chain(history.iter().map(|h| h.status_record.status)) {
        Ok(()) => {
            let _ = writeln!(out, "chain valid: yes");
        }
        Err(e) => {
            let _ = writeln!(out, "chain valid: NO ({e})");
        }
    }
    Ok(out)
}

/// One workflow: its run, members as a tree by parent (with latest status),
/// sub-workflows, sub-invocations and data keys.
pub fn workflow(b: &dyn StateBackend, id: &InvocationId) -> Result<String> {
    let mut out = String::new();
    // One pass over the snapshot's workflow runs and data (pages, not the
    // whole store in memory): this run, its sub-workflows, its data.
    let mut snap = b.snapshot()?;
    let (mut this, mut subs, mut data) = (None, Vec::new(), Vec::new());
    for kind in [Kind::WorkflowRun, Kind::WorkflowData] {
        for_each_page(snap.as_mut(), kind, 1000, |page| {
            for row in page.items {
                match row {
                    Row::WorkflowRun(r) if r.workflow_id == *id => this = Some(r),
                    Row::WorkflowRun(r) if r.parent_workflow_id.as_ref() == Some(id) => {
                        subs.push(r);
                    }
                    Row::WorkflowData(w, k, v) if w == *id => data.push((k, v)),
                    _ => {}
                }
            }
            Ok(())
        })?;
    }
    drop(snap);
    match this.as_ref() {
        Some(r) => {
            let _ = writeln!(
                out,
                "workflow {id} ({}){}",
                r.workflow_type,
                r.parent_workflow_id
                    .as_ref()
                    .map(|p| format!(" inside {p}"))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(out, "workflow {id} (no workflow run stored)");
        }
    }
    let members = b.get_invocation_ids_by_workflow(Some(id), None)?;
    let mut parent_of: BTreeMap<InvocationId, Option<InvocationId>> = BTreeMap::new();
    let mut label: HashMap<InvocationId, String> = HashMap::new();
    for m in &members {
        let record = b.get_invocation(m)?;
        let inv = &record.0;
        let status = status_of(b.get_history(m)?.last());
        label.insert(
            m.clone(),
            format!("{m}  {}  [{status}]", inv.call_id.task_id()),
        );
        parent_of.insert(m.clone(), inv.parent_invocation_id.clone());
    }
    let mut children: BTreeMap<Option<InvocationId>, Vec<InvocationId>> = BTreeMap::new();
    for (m, p) in &parent_of {
        // A parent outside the workflow makes the member a root here.
        let key = p.clone().filter(|p| parent_of.contains_key(p));
        children.entry(key).or_default().push(m.clone());
    }
    let _ = writeln!(out, "members ({}):", members.len());
    let mut stack: Vec<(InvocationId, usize)> = children
        .get(&None)
        .map(|r| r.iter().rev().map(|m| (m.clone(), 1)).collect())
        .unwrap_or_default();
    let mut shown = 0;
    while let Some((m, depth)) = stack.pop() {
        shown += 1;
        if shown > members.len() {
            break; // a parent cycle in stored data; never loop forever
        }
        let _ = writeln!(
            out,
            "{}{}",
            "  ".repeat(depth),
            label.get(&m).map_or("?", String::as_str)
        );
        if let Some(kids) = children.get(&Some(m)) {
            stack.extend(kids.iter().rev().map(|k| (k.clone(), depth + 1)));
        }
    }
    let _ = writeln!(out, "sub-workflows ({}):", subs.len());
    for r in subs {
        let _ = writeln!(out, "  {} ({})", r.workflow_id, r.workflow_type);
    }
    let sub_invs = b.get_workflow_sub_invocations(id)?;
    let _ = writeln!(out, "sub-invocations ({}):", sub_invs.len());
    for s in sub_invs {
        let _ = writeln!(out, "  {s}");
    }
    let _ = writeln!(out, "data ({}):", data.len());
    for (k, v) in data {
        let _ = writeln!(out, "  {k} = {v}");
    }
    Ok(out)
}
