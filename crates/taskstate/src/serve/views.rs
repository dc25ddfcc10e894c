//! What each page shows, as plain data: built from the store by blocking
//! calls (run off the async threads), rendered as HTML by `html` and as
//! JSON by `/api/...` — one builder for both, so they cannot disagree.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use taskstate_core::{
    Cursor, Error, ErrorKind, InvocationFilter, InvocationHistory, InvocationId, InvocationStatus,
    InvocationSummary, RunnerContext, RunnerId, StateBackend, TimeRange, Timestamp, validate_chain,
};

use super::WebError;
use super::params::{Params, checked_id};
use crate::inspect::absent_as_none;

/// One invocation in a list.
#[derive(Serialize, Clone, Debug)]
pub struct Summary {
    /// The invocation id.
    pub invocation_id: String,
    /// The task (`module.function`).
    pub task: String,
    /// The workflow (its root invocation id).
    pub workflow_id: String,
    /// Latest status; `unknown` when the stored text is not one we know.
    pub status: String,
    /// When the latest status was recorded (UTC, ISO 8601).
    pub at: String,
}

fn summary(s: &InvocationSummary) -> Summary {
    Summary {
        invocation_id: s.invocation_id.to_string(),
        task: s.task_id.key().to_owned(),
        workflow_id: s.workflow_id.to_string(),
        status: status_text(s.status),
        at: s.time_key.to_timestamp().to_string(),
    }
}

fn status_text(s: Option<InvocationStatus>) -> String {
    s.map_or_else(|| "unknown".to_owned(), |s| s.as_str().to_owned())
}

// ---- overview --------------------------------------------------------

/// The overview's store-wide figures: costly on a big store, so the server
/// caches them (see `Overview::figures_age_s`).
#[derive(Serialize, Clone, Debug)]
pub struct Figures {
    /// Rows per kind, in the export's kind order.
    pub counts: Vec<(String, u64)>,
    /// History keys per latest status, ascending by status.
    pub statuses: Vec<(String, u64)>,
}

pub(crate) fn figures(b: &dyn StateBackend) -> Result<Figures, WebError> {
    let counts = crate::copy::counts(b)?;
    Ok(Figures {
        counts: counts
            .rows()
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect(),
        statuses: b.latest_status_counts()?.by_status,
    })
}

/// A stored app.
#[derive(Serialize, Clone, Debug)]
pub struct AppView {
    pub app_id: String,
    pub module: String,
    pub config_filepath: Option<String>,
}

/// The overview page (`/`, `/api/overview`).
#[derive(Serialize, Clone, Debug)]
pub struct Overview {
    /// The engine's name.
    pub engine: String,
    /// Store-wide counts (cached).
    pub figures: Figures,
    /// Seconds since `figures` were read (they are refreshed in the
    /// background once older than the server's cache time).
    pub figures_age_s: f64,
    /// Every stored app.
    pub apps: Vec<AppView>,
    /// The invocations whose status changed last, newest first.
    pub recent: Vec<Summary>,
}

pub(crate) fn overview(
    b: &dyn StateBackend,
    figures: Figures,
    figures_age_s: f64,
) -> Result<Overview, WebError> {
    let apps = b
        .discover_app_infos()?
        .into_iter()
        .map(|a| AppView {
            app_id: a.app_id.to_string(),
            module: a.module,
            config_filepath: a.config_filepath,
        })
        .collect();
    let recent = b
        .list_invocations(&InvocationFilter::default(), None, 20)?
        .items
        .iter()
        .map(summary)
        .collect();
    Ok(Overview {
        engine: b.engine_name().to_owned(),
        figures,
        figures_age_s,
        apps,
        recent,
    })
}

// ---- invocation list ---------------------------------------------------

/// The filters as given, echoed back (the form shows them, links keep them).
#[derive(Serialize, Clone, Debug, Default)]
pub struct ListFilters {
    /// The latest status.
    pub status: Option<String>,
    /// The task (`module.function`).
    pub task: Option<String>,
    pub workflow: Option<String>,
    /// Range start (UTC).
    pub since: Option<String>,
    /// Range end (UTC).
    pub until: Option<String>,
    /// The row limit.
    pub limit: usize,
}

/// One page of the invocation list (`/invocations`).
#[derive(Serialize, Clone, Debug)]
pub struct InvocationList {
    /// The filters of this page.
    pub filters: ListFilters,
    /// The invocations, newest latest status first.
    pub items: Vec<Summary>,
    /// The `after` value of the next page; `None` on the last page.
    pub next: Option<String>,
    /// Whether this page follows another (came with `after`).
    pub paged: bool,
}

/// A paged read's error: invalid input there can only be the `after`
/// cursor the request carried.
fn cursor_error(e: Error) -> WebError {
    match e.kind() {
        ErrorKind::InvalidInput => WebError::bad(format!("after: {e}")),
        _ => WebError::from(e),
    }
}

pub(crate) const LIST_PARAMS: &[&str] = &[
    "status", "task", "workflow", "since", "until", "after", "limit",
];

pub(crate) fn invocation_list(
    b: &dyn StateBackend,
    p: &Params,
) -> Result<InvocationList, WebError> {
    let status = p.status()?;
    let task = p.task("task")?;
    let workflow = p.id("workflow")?;
    let since = p.time("since")?;
    let until = p.time("until")?;
    let after = p.cursor("after")?;
    let limit = p.count("limit", 50, 500)?;
    let range = match (since, until) {
        (None, None) => None,
        (s, u) => Some(TimeRange::new(
            s.unwrap_or_else(|| Timestamp::from_micros(i64::MIN / 4)),
            u.unwrap_or_else(|| Timestamp::from_micros(i64::MAX / 4)),
        )),
    };
    let filter = InvocationFilter {
        status,
        task: task.clone(),
        workflow: workflow.clone(),
        range,
    };
    let page = b
        .list_invocations(&filter, after.as_ref(), limit)
        .map_err(cursor_error)?;
    Ok(InvocationList {
        filters: ListFilters {
            status: status.map(|s| s.as_str().to_owned()),
            task: task.map(|t| t.key().to_owned()),
            workflow: workflow.map(|w| w.to_string()),
            since: since.map(|t| t.to_string()),
            until: until.map(|t| t.to_string()),
            limit,
        },
        items: page.items.iter().map(summary).collect(),
        next: page.next.map(|c: Cursor| c.token().to_owned()),
        paged: after.is_some(),
    })
}

// ---- invocation detail -------------------------------------------------

/// One history row.
#[derive(Serialize, Clone, Debug)]
pub struct Step {
    pub at: String,
    /// The latest status.
    pub status: String,
    pub runner_id: Option<String>,
    pub runner_context_id: String,
    pub registered_by: Option<String>,
    /// Milliseconds since the previous step (`None` for the first).
    pub since_previous_ms: Option<f64>,
    /// The record's own invocation id when it differs from the key it is
    /// stored under (SPEC §3).
    pub record_of: Option<String>,
}

/// A runner context.
#[derive(Serialize, Clone, Debug)]
pub struct RunnerView {
    pub runner_id: String,
    pub runner_cls: String,
    pub hostname: String,
    pub pid: i64,
    pub thread_id: i64,
    /// Parent ids, nearest first.
    pub parents: Vec<String>,
}

fn runner_view(c: &RunnerContext) -> RunnerView {
    let mut parents = Vec::new();
    let mut p = c.parent.as_deref();
    while let Some(ctx) = p {
        parents.push(ctx.runner_id.to_string());
        p = ctx.parent.as_deref();
    }
    RunnerView {
        runner_id: c.runner_id.to_string(),
        runner_cls: c.runner_cls.clone(),
        hostname: c.hostname.clone(),
        pid: c.pid,
        thread_id: c.thread_id,
        parents,
    }
}

/// One invocation (`/invocations/{id}`).
#[derive(Serialize, Clone, Debug)]
pub struct InvocationDetail {
    /// The invocation id.
    pub invocation_id: String,
    /// The task (`module.function`).
    pub task: String,
    /// The call id.
    pub call_id: String,
    /// Argument name and serialized value (pretty-printed when JSON).
    pub arguments: Vec<(String, String)>,
    /// The parent invocation, if any.
    pub parent_invocation_id: Option<String>,
    /// The workflow (its root invocation id).
    pub workflow_id: String,
    /// The workflow's type (a task).
    pub workflow_type: String,
    /// The parent workflow, if any.
    pub parent_workflow_id: Option<String>,
    /// Up to 200 children, ascending; `children_total` counts all.
    pub children: Vec<String>,
    /// How many children there are.
    pub children_total: usize,
    /// The result, pretty-printed when JSON.
    pub result: Option<String>,
    /// The exception, pretty-printed when JSON.
    pub exception: Option<String>,
    /// The status history under this id, in order.
    pub history: Vec<Step>,
    /// Whether the statuses, in order, are moves the status machine allows.
    pub chain_valid: bool,
    /// Why not, when it is not.
    pub chain_error: Option<String>,
    /// The runner contexts named by the history.
    pub runners: Vec<RunnerView>,
}

/// `text` pretty-printed when it is JSON, else as stored.
pub(crate) fn pretty(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.is_object() || v.is_array() => {
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.to_owned())
        }
        _ => text.to_owned(),
    }
}

fn micros_between(a: &Timestamp, b: &Timestamp) -> f64 {
    (b.micros() - a.micros()) as f64 / 1000.0
}

pub(crate) fn invocation_detail(
    b: &dyn StateBackend,
    raw_id: &str,
) -> Result<InvocationDetail, WebError> {
    let id = checked_id("invocation id", raw_id)?;
    let record = b.get_invocation(&id)?;
    let (inv, call) = &*record;
    let children_all = b.get_child_invocations(&id)?;
    let rows = b.get_history_rows(&id)?;
    let history: Vec<&InvocationHistory> = rows.iter().map(|r| &r.record).collect();
    let chain = validate_chain(history.iter().map(|h| h.status_record.status));
    let mut steps = Vec::with_capacity(history.len());
    for (i, h) in history.iter().enumerate() {
        steps.push(Step {
            at: h.timestamp.to_string(),
            status: h.status_record.status.as_str().to_owned(),
            runner_id: h.status_record.runner_id.as_ref().map(|r| r.to_string()),
            runner_context_id: h.runner_context_id.to_string(),
            registered_by: h.registered_by_inv_id.as_ref().map(|r| r.to_string()),
            since_previous_ms: i
                .checked_sub(1)
                .map(|p| micros_between(&history[p].timestamp, &h.timestamp)),
            record_of: (h.invocation_id != id).then(|| h.invocation_id.to_string()),
        });
    }
    let mut runner_ids: Vec<RunnerId> = history
        .iter()
        .map(|h| h.runner_context_id.clone())
        .collect();
    runner_ids.sort();
    runner_ids.dedup();
    let runners = b
        .get_runner_contexts(&runner_ids)?
        .iter()
        .map(runner_view)
        .collect();
    Ok(InvocationDetail {
        invocation_id: id.to_string(),
        task: call.call_id.task_id().key().to_owned(),
        call_id: call.call_id.key().to_owned(),
        arguments: call
            .serialized_arguments
            .iter()
            .map(|(k, v)| (k.to_owned(), pretty(v)))
            .collect(),
        parent_invocation_id: inv.parent_invocation_id.as_ref().map(|p| p.to_string()),
        workflow_id: inv.workflow.workflow_id.to_string(),
        workflow_type: inv.workflow.workflow_type.key().to_owned(),
        parent_workflow_id: inv
            .workflow
            .parent_workflow_id
            .as_ref()
            .map(|p| p.to_string()),
        children_total: children_all.len(),
        children: children_all
            .iter()
            .take(200)
            .map(|c| c.to_string())
            .collect(),
        result: absent_as_none(b.get_result(&id))?.map(|r| pretty(&r)),
        exception: absent_as_none(b.get_exception(&id))?.map(|r| pretty(&r)),
        history: steps,
        chain_valid: chain.is_ok(),
        chain_error: chain.err().map(|e| e.to_string()),
        runners,
    })
}

// ---- workflows ---------------------------------------------------------

/// One workflow run.
#[derive(Serialize, Clone, Debug)]
pub struct RunView {
    /// The workflow (its root invocation id).
    pub workflow_id: String,
    /// The workflow's type (a task).
    pub workflow_type: String,
    /// The parent workflow, if any.
    pub parent_workflow_id: Option<String>,
}

/// Workflow types and the runs of one (`/workflows`).
#[derive(Serialize, Clone, Debug)]
pub struct Workflows {
    /// Every workflow type, ascending.
    pub types: Vec<String>,
    /// The type shown (`?type=`), if any.
    pub selected: Option<String>,
    /// One page (`limit`) of that type's runs, ascending by workflow id.
    pub runs: Vec<RunView>,
    /// The `after` value of the next page; `None` on the last page.
    pub next: Option<String>,
}

pub(crate) fn workflows(b: &dyn StateBackend, p: &Params) -> Result<Workflows, WebError> {
    let ty = p.task("type")?;
    let limit = p.count("limit", 200, 5000)?;
    let after = p.cursor("after")?;
    let types = b
        .get_all_workflow_types()?
        .iter()
        .map(|t| t.key().to_owned())
        .collect();
    let (runs, next) = match &ty {
        Some(t) => {
            let page = b
                .list_workflow_runs(Some(t), after.as_ref(), limit)
                .map_err(cursor_error)?;
            let runs = page
                .items
                .into_iter()
                .map(|w| RunView {
                    workflow_id: w.workflow_id.to_string(),
                    workflow_type: w.workflow_type.key().to_owned(),
                    parent_workflow_id: w.parent_workflow_id.map(|p| p.to_string()),
                })
                .collect();
            (runs, page.next.map(|c| c.token().to_owned()))
        }
        None => (Vec::new(), None),
    };
    Ok(Workflows {
        types,
        selected: ty.map(|t| t.key().to_owned()),
        runs,
        next,
    })
}

/// One node of a family tree.
#[derive(Serialize, Clone, Debug)]
pub struct TreeNode {
    /// The invocation id.
    pub invocation_id: String,
    /// The task (`module.function`).
    pub task: Option<String>,
    /// The latest status.
    pub status: String,
    /// Depth below the root (0).
    pub depth: usize,
    /// The node's workflow when it is not the tree's (a sub-workflow).
    pub other_workflow: Option<String>,
    /// Children not shown because the budget ran out.
    pub hidden_children: usize,
}

/// A workflow's family tree (`/workflows/{id}`).
#[derive(Serialize, Clone, Debug)]
pub struct Tree {
    /// The workflow (its root invocation id).
    pub workflow_id: String,
    /// The workflow's type (a task).
    pub workflow_type: Option<String>,
    /// The parent workflow, if any.
    pub parent_workflow_id: Option<String>,
    /// Invocations in this workflow (by workflow id).
    pub members_total: usize,
    /// The tree from the root, depth first, at most `budget` nodes.
    pub nodes: Vec<TreeNode>,
    /// The node budget of this view.
    pub budget: usize,
    /// Whether nodes were left out (a larger budget shows more).
    pub truncated: bool,
    /// Members not reached from the root (no parent link to it).
    pub unreached: Vec<String>,
    /// Sub-invocations recorded for the workflow (first 500).
    pub sub_invocations: Vec<String>,
    /// Latest statuses of the nodes shown.
    pub latest_counts: Vec<(String, u64)>,
}

const MAX_BUDGET: usize = 5000;

/// A workflow's family tree from its root (the invocation whose id is the
/// workflow's), depth first, within a node budget.
pub(crate) fn tree(b: &dyn StateBackend, raw_id: &str, p: &Params) -> Result<Tree, WebError> {
    let wid = checked_id("workflow id", raw_id)?;
    let budget = p.count("budget", 200, MAX_BUDGET)?;
    let members = b.get_invocation_ids_by_workflow(Some(&wid), None)?;
    let root = absent_as_none(b.get_invocation(&wid))?;
    if root.is_none() && members.is_empty() {
        return Err(WebError::NotFound(format!("no workflow {:?}", raw_id)));
    }
    let mut nodes = Vec::new();
    let mut seen: HashSet<InvocationId> = HashSet::new();
    let mut truncated = false;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    if root.is_some() {
        // Depth first with an explicit stack: (id, depth).
        let mut stack = vec![(wid.clone(), 0usize)];
        while let Some((id, depth)) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if nodes.len() >= budget {
                truncated = true;
                break;
            }
            let inv = absent_as_none(b.get_invocation(&id))?;
            let status = b.get_history_rows(&id)?.last().map_or_else(
                || "none".to_owned(),
                |r| r.record.status_record.status.as_str().to_owned(),
            );
            *counts.entry(status.clone()).or_default() += 1;
            let children = b.get_child_invocations(&id)?;
            let room = budget.saturating_sub(nodes.len() + 1);
            let hidden = children.len().saturating_sub(room);
            nodes.push(TreeNode {
                invocation_id: id.to_string(),
                task: inv.as_ref().map(|r| r.1.call_id.task_id().key().to_owned()),
                status,
                depth,
                other_workflow: inv
                    .as_ref()
                    .map(|r| &r.0.workflow.workflow_id)
                    .filter(|w| **w != wid)
                    .map(|w| w.to_string()),
                hidden_children: hidden,
            });
            if hidden > 0 {
                truncated = true;
            }
            for c in children.into_iter().take(room).rev() {
                stack.push((c, depth + 1));
            }
        }
    }
    let unreached: Vec<String> = if truncated {
        Vec::new()
    } else {
        members
            .iter()
            .filter(|m| !seen.contains(*m))
            .take(budget)
            .map(|m| m.to_string())
            .collect()
    };
    Ok(Tree {
        workflow_id: wid.to_string(),
        workflow_type: root
            .as_ref()
            .map(|r| r.0.workflow.workflow_type.key().to_owned()),
        parent_workflow_id: root
            .as_ref()
            .and_then(|r| r.0.workflow.parent_workflow_id.as_ref())
            .map(|p| p.to_string()),
        members_total: members.len(),
        nodes,
        budget,
        truncated,
        unreached,
        sub_invocations: b
            .get_workflow_sub_invocations(&wid)?
            .iter()
            .take(500)
            .map(|s| s.to_string())
            .collect(),
        latest_counts: counts.into_iter().collect(),
    })
}

// ---- runners -----------------------------------------------------------

/// Runner contexts matching a search (`/runners`).
#[derive(Serialize, Clone, Debug)]
pub struct Runners {
    /// The search (literal, ASCII case-insensitive).
    pub q: String,
    /// The runner contexts named by the history.
    pub runners: Vec<RunnerView>,
    /// How many match.
    pub total: usize,
}

pub(crate) fn runners(b: &dyn StateBackend, p: &Params) -> Result<Runners, WebError> {
    let q = p.get("q").unwrap_or("").to_owned();
    if q.len() > taskstate_core::MAX_ID_BYTES {
        return Err(WebError::bad("q is longer than an id can be"));
    }
    let limit = p.count("limit", 200, 5000)?;
    let all = b.get_matching_runner_contexts(&q)?;
    Ok(Runners {
        total: all.len(),
        runners: all.iter().take(limit).map(runner_view).collect(),
        q,
    })
}

// ---- timeline ----------------------------------------------------------

/// A status held by an invocation from `start` to `end`.
#[derive(Serialize, Clone, Debug)]
pub struct Segment {
    /// The invocation id.
    pub invocation_id: String,
    /// The latest status.
    pub status: String,
    pub start: String,
    /// `None`: still in this status at the end of the range.
    pub end: Option<String>,
    /// Position and width as fractions of the range (0..=1).
    pub x: f64,
    pub w: f64,
}

/// One runner's lane.
#[derive(Serialize, Clone, Debug)]
pub struct Lane {
    pub runner_id: String,
    pub runner_cls: Option<String>,
    /// Nesting under parent runners (0: a top-level runner).
    pub depth: usize,
    pub segments: Vec<Segment>,
}

/// History in a time range as lanes per runner (`/timeline`).
#[derive(Serialize, Clone, Debug)]
pub struct Timeline {
    /// Range start (UTC).
    pub since: String,
    /// Range end (UTC).
    pub until: String,
    /// History rows drawn.
    pub rows: usize,
    /// Whether more rows fell in the range than `limit` allowed.
    pub truncated: bool,
    /// The row limit.
    pub limit: usize,
    /// Lanes, nested under parent runners.
    pub lanes: Vec<Lane>,
}

pub(crate) fn timeline(b: &dyn StateBackend, p: &Params) -> Result<Timeline, WebError> {
    let limit = p.count("limit", 2000, 20_000)?;
    let until = match p.time("until")? {
        Some(t) => t,
        None => b
            .list_invocations(&InvocationFilter::default(), None, 1)?
            .items
            .first()
            .map_or_else(Timestamp::now, |s| s.time_key.to_timestamp()),
    };
    let since = match p.time("since")? {
        Some(t) => t,
        None => until.add_micros(-60 * 60 * 1_000_000),
    };
    if since.key() > until.key() {
        return Err(WebError::bad("since is after until"));
    }
    let range = TimeRange::new(since, until);
    let mut rows: Vec<InvocationHistory> = Vec::new();
    let mut cursor = None;
    let mut truncated = false;
    loop {
        let page = b.history_in_timerange(&range, cursor.as_ref(), 1000.min(limit + 1))?;
        rows.extend(page.items);
        if rows.len() > limit {
            rows.truncate(limit);
            truncated = true;
            break;
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let span = (until.micros() - since.micros()).max(1) as f64;
    let frac = |t: &Timestamp| ((t.micros() - since.micros()) as f64 / span).clamp(0.0, 1.0);
    // Each record starts a segment that ends at the next record of the same
    // invocation (rows come in time order); a final status is a tick.
    let mut by_inv: HashMap<&InvocationId, Vec<usize>> = HashMap::new();
    for (i, h) in rows.iter().enumerate() {
        by_inv.entry(&h.invocation_id).or_default().push(i);
    }
    let mut lanes_map: BTreeMap<RunnerId, Vec<Segment>> = BTreeMap::new();
    for idxs in by_inv.values() {
        for (n, &i) in idxs.iter().enumerate() {
            let h = &rows[i];
            let next = idxs.get(n + 1).map(|&j| &rows[j].timestamp);
            let x = frac(&h.timestamp);
            let end_x = match next {
                Some(t) => frac(t),
                None if h.status_record.status.is_final() => x,
                None => 1.0,
            };
            lanes_map
                .entry(h.runner_context_id.clone())
                .or_default()
                .push(Segment {
                    invocation_id: h.invocation_id.to_string(),
                    status: h.status_record.status.as_str().to_owned(),
                    start: h.timestamp.to_string(),
                    end: next.map(|t| t.to_string()),
                    x,
                    w: (end_x - x).max(0.0),
                });
        }
    }
    for segs in lanes_map.values_mut() {
        segs.sort_by(|a, b| {
            a.x.total_cmp(&b.x)
                .then_with(|| a.invocation_id.cmp(&b.invocation_id))
        });
    }
    let ids: Vec<RunnerId> = lanes_map.keys().cloned().collect();
    let contexts: HashMap<RunnerId, RunnerContext> = b
        .get_runner_contexts(&ids)?
        .into_iter()
        .map(|c| (c.runner_id.clone(), c))
        .collect();
    Ok(Timeline {
        since: since.to_string(),
        until: until.to_string(),
        rows: rows.len(),
        truncated,
        limit,
        lanes: nest_lanes(lanes_map, &contexts),
    })
}

/// Lanes ordered as a tree of runners: each under its nearest ancestor
/// that has a lane, children after their parent, siblings by id.
fn nest_lanes(
    mut lanes: BTreeMap<RunnerId, Vec<Segment>>,
    contexts: &HashMap<RunnerId, RunnerContext>,
) -> Vec<Lane> {
    let ids: Vec<RunnerId> = lanes.keys().cloned().collect();
    let parent_lane = |id: &RunnerId| -> Option<RunnerId> {
        let mut p = contexts.get(id)?.parent.as_deref();
        while let Some(ctx) = p {
            if lanes.contains_key(&ctx.runner_id) {
                return Some(ctx.runner_id.clone());
            }
            p = ctx.parent.as_deref();
        }
        None
    };
    let mut children: BTreeMap<Option<RunnerId>, Vec<RunnerId>> = BTreeMap::new();
    for id in &ids {
        children
            .entry(parent_lane(id))
            .or_default()
            .push(id.clone());
    }
    let mut out = Vec::new();
    let mut stack: Vec<(RunnerId, usize)> = children
        .get(&None)
        .map(|v| v.iter().rev().map(|id| (id.clone(), 0)).collect())
        .unwrap_or_default();
    while let Some((id, depth)) = stack.pop() {
        if let Some(kids) = children.get(&Some(id.clone())) {
            stack.extend(kids.iter().rev().map(|k| (k.clone(), depth + 1)));
        }
        out.push(Lane {
            runner_cls: contexts.get(&id).map(|c| c.runner_cls.clone()),
            depth,
            segments: lanes.remove(&id).unwrap_or_default(),
            runner_id: id.to_string(),
        });
    }
    out
}
