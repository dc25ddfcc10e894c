//! The pages, as maud templates: every `(value)` is HTML-escaped by maud,
//! so a stored string shows as text whatever it holds. Ids in links are
//! percent-encoded path segments or form-encoded query values.

use maud::{DOCTYPE, Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use taskstate_core::InvocationStatus;

use super::views::{
    InvocationDetail, InvocationList, ListFilters, Overview, Runners, Timeline, Tree, Workflows,
};

/// Everything but unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` as one URL path segment or query value: every byte but
/// unreserved characters percent-encoded.
#[must_use]
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

pub(crate) fn inv_href(id: &str) -> String {
    format!("/invocations/{}", encode_component(id))
}

pub(crate) fn wf_href(id: &str) -> String {
    format!("/workflows/{}", encode_component(id))
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

fn list_href(f: &ListFilters, after: Option<&str>) -> String {
    let limit = f.limit.to_string();
    format!(
        "/invocations?{}",
        query(&[
            ("status", f.status.as_deref()),
            ("task", f.task.as_deref()),
            ("workflow", f.workflow.as_deref()),
            ("since", f.since.as_deref()),
            ("until", f.until.as_deref()),
            ("limit", Some(&limit)),
            ("after", after),
        ])
    )
}

/// The CSS class of a status (a fixed set: never stored text).
fn status_class(s: &str) -> &'static str {
    use InvocationStatus as S;
    match s.parse::<InvocationStatus>() {
        Ok(S::Success) => "st-success",
        Ok(S::Failed | S::Killed) => "st-failed",
        Ok(S::Running | S::RunningRecovery) => "st-running",
        Ok(S::Retry | S::Paused) => "st-retry",
        Ok(st) if st.is_final() => "st-final",
        Ok(_) => "st-waiting",
        Err(_) => "st-unknown",
    }
}

fn status_badge(s: &str) -> Markup {
    html! { span class={ "status " (status_class(s)) } data-status=(s) { (s) } }
}

fn inv_link(id: &str) -> Markup {
    html! { a class="id" href=(inv_href(id)) { (id) } }
}

fn wf_link(id: &str) -> Markup {
    html! { a class="id" href=(wf_href(id)) { (id) } }
}

/// The page frame: header with navigation, then `body`.
pub(crate) fn page(title: &str, current: &str, body: Markup) -> Markup {
    let nav = [
        ("/", "Overview"),
        ("/invocations", "Invocations"),
        ("/workflows", "Workflows"),
        ("/runners", "Runners"),
        ("/timeline", "Timeline"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · taskstate" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                header {
                    span.brand { "taskstate" }
                    nav {
                        @for (href, label) in nav {
                            a href=(href) class=[(href == current).then_some("current")] { (label) }
                        }
                    }
                }
                main { h1 { (title) } (body) }
                footer { "read-only view · JSON of every page under " code { "/api/…" } }
            }
        }
    }
}

pub(crate) fn error_page(status: u16, message: &str) -> Markup {
    page(
        &format!("Error {status}"),
        "",
        html! { p.error id="error" { (message) } p { a href="/" { "Back to the overview" } } },
    )
}

fn summary_table(items: &[super::views::Summary], id: &str) -> Markup {
    html! {
        table id=(id) {
            thead { tr { th { "Invocation" } th { "Task" } th { "Workflow" } th { "Latest status" } th { "At (UTC)" } } }
            tbody {
                @for s in items {
                    tr data-id=(s.invocation_id) {
                        td { (inv_link(&s.invocation_id)) }
                        td { a href={ "/invocations?" (query(&[("task", Some(&s.task))])) } { (s.task) } }
                        td { (wf_link(&s.workflow_id)) }
                        td { (status_badge(&s.status)) }
                        td.time { (s.at) }
                    }
                }
            }
        }
        @if items.is_empty() { p.empty { "No invocations." } }
    }
}

pub(crate) fn overview(o: &Overview) -> Markup {
    let body = html! {
        section {
            h2 { "Counts" }
            table id="counts" {
                thead { tr { th { "Kind" } th.num { "Rows" } } }
                tbody {
                    @for (k, n) in &o.figures.counts {
                        tr data-kind=(k) { td { (k) } td.num { (n) } }
                    }
                }
            }
            p.note { "Engine " (o.engine) "; counts read " (format!("{:.0}", o.figures_age_s)) " s ago." }
        }
        section {
            h2 { "Latest status" }
            table id="statuses" {
                thead { tr { th { "Status" } th.num { "Invocations" } } }
                tbody {
                    @for (s, n) in &o.figures.statuses {
                        tr data-status=(s) {
                            td { a href={ "/invocations?" (query(&[("status", Some(s))])) } { (status_badge(s)) } }
                            td.num { (n) }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Apps" }
            @if o.apps.is_empty() { p.empty { "No app info stored." } }
            ul id="apps" {
                @for a in &o.apps { li { code { (a.app_id) } " — " (a.module) } }
            }
        }
        section {
            h2 { "Recent activity" }
            (summary_table(&o.recent, "recent"))
            p { a href="/invocations" { "All invocations →" } }
        }
    };
    page("Overview", "/", body)
}

pub(crate) fn invocation_list(l: &InvocationList) -> Markup {
    let f = &l.filters;
    let body = html! {
        form id="filters" method="get" action="/invocations" {
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for s in InvocationStatus::ALL {
                        option value=(s.as_str()) selected[f.status.as_deref() == Some(s.as_str())] { (s.as_str()) }
                    }
                }
            }
            label { "Task " input name="task" value=[f.task.as_deref()] placeholder="module.function"; }
            label { "Workflow " input name="workflow" value=[f.workflow.as_deref()] placeholder="workflow id"; }
            label { "Since " input name="since" value=[f.since.as_deref()] placeholder="2026-01-31T00:00:00+00:00"; }
            label { "Until " input name="until" value=[f.until.as_deref()]; }
            label { "Per page " input name="limit" value=(f.limit) size="4"; }
            button type="submit" { "Filter" }
        }
        (summary_table(&l.items, "invocations"))
        p.pager {
            @if l.paged { a href=(list_href(f, None)) { "← First page" } " " }
            @if let Some(next) = &l.next { a id="next" href=(list_href(f, Some(next))) { "Next page →" } }
        }
    };
    page("Invocations", "/invocations", body)
}

fn opt_inv(v: &Option<String>) -> Markup {
    html! { @match v { Some(id) => (inv_link(id)), None => span.none { "—" } } }
}

pub(crate) fn invocation_detail(d: &InvocationDetail) -> Markup {
    let body = html! {
        table.kv id="call" {
            tr { th { "Invocation" } td { code id="invocation-id" { (d.invocation_id) } } }
            tr { th { "Task" } td { (d.task) } }
            tr { th { "Call" } td { code { (d.call_id) } } }
            tr { th { "Parent" } td { (opt_inv(&d.parent_invocation_id)) } }
            tr { th { "Workflow" } td { (wf_link(&d.workflow_id)) " (" (d.workflow_type) ")" } }
            tr { th { "Parent workflow" } td { @match &d.parent_workflow_id { Some(w) => (wf_link(w)), None => span.none { "—" } } } }
        }
        h2 { "Arguments" }
        @if d.arguments.is_empty() { p.empty { "No arguments." } }
        table id="arguments" {
            @for (k, v) in &d.arguments { tr { th { (k) } td { pre { (v) } } } }
        }
        @if let Some(r) = &d.result { h2 { "Result" } pre id="result" { (r) } }
        @if let Some(e) = &d.exception { h2 { "Exception" } pre id="exception" { (e) } }
        h2 { "Status history" }
        p id="chain" class=(if d.chain_valid { "ok" } else { "bad" }) {
            @if d.chain_valid { "Every step is a move the status machine allows." }
            @else { "Not a valid chain: " (d.chain_error.as_deref().unwrap_or("")) }
        }
        table id="history" {
            thead { tr { th { "At (UTC)" } th { "Status" } th.num { "+ms" } th { "Runner context" } th { "Owner" } th { "Registered by" } } }
            tbody {
                @for s in &d.history {
                    tr {
                        td.time { (s.at) @if let Some(o) = &s.record_of { " " span.note { "(record of " (o) ")" } } }
                        td { (status_badge(&s.status)) }
                        td.num { @if let Some(ms) = s.since_previous_ms { (format!("{ms:.1}")) } }
                        td { a href={ "/runners?" (query(&[("q", Some(&s.runner_context_id))])) } { (s.runner_context_id) } }
                        td { (s.runner_id.as_deref().unwrap_or("")) }
                        td { (opt_inv(&s.registered_by)) }
                    }
                }
            }
        }
        (history_svg(d))
        h2 { "Runner contexts" }
        (runner_table(&d.runners, "runners"))
        h2 { "Children (" (d.children_total) ")" }
        ul id="children" { @for c in &d.children { li { (inv_link(c)) } } }
        @if d.children_total > d.children.len() { p.note { "Showing " (d.children.len()) " of " (d.children_total) "." } }
    };
    page("Invocation", "/invocations", body)
}

/// The history as a horizontal bar: one segment per step, its width the
/// time until the next step.
fn history_svg(d: &InvocationDetail) -> Markup {
    let gaps: Vec<f64> = d
        .history
        .iter()
        .skip(1)
        .map(|s| s.since_previous_ms.unwrap_or(0.0).max(0.0))
        .collect();
    let total: f64 = gaps.iter().sum();
    let n = d.history.len();
    if n == 0 {
        return html! {};
    }
    // Every step gets a minimum width so instant steps stay visible.
    let min = 40.0;
    let free = (900.0 - min * n as f64).max(0.0);
    let mut x = 0.0;
    let mut boxes = Vec::with_capacity(n);
    for i in 0..n {
        let share = if total > 0.0 {
            gaps.get(i).copied().unwrap_or(0.0) / total
        } else {
            1.0 / n as f64
        };
        let w = min + free * share;
        boxes.push((x, w));
        x += w;
    }
    html! {
        svg id="history-timeline" viewBox="0 0 900 40" width="900" height="40" role="img" {
            @for (s, (x, w)) in d.history.iter().zip(boxes) {
                rect class={ "seg " (status_class(&s.status)) } x=(format!("{x:.1}")) y="4" width=(format!("{:.1}", (w - 2.0).max(1.0))) height="22" {
                    title { (s.status) " at " (s.at) }
                }
                text x=(format!("{:.1}", x + 3.0)) y="38" class="axis" { (s.status) }
            }
        }
    }
}

fn runner_table(rs: &[super::views::RunnerView], id: &str) -> Markup {
    html! {
        table id=(id) {
            thead { tr { th { "Runner id" } th { "Class" } th { "Host" } th.num { "pid" } th.num { "thread" } th { "Parents (nearest first)" } } }
            tbody {
                @for r in rs {
                    tr data-runner=(r.runner_id) {
                        td { code { (r.runner_id) } }
                        td { (r.runner_cls) }
                        td { (r.hostname) }
                        td.num { (r.pid) }
                        td.num { (r.thread_id) }
                        td { @for (i, p) in r.parents.iter().enumerate() { @if i > 0 { " → " } code { (p) } } }
                    }
                }
            }
        }
        @if rs.is_empty() { p.empty { "No runner contexts." } }
    }
}

pub(crate) fn workflows(w: &Workflows) -> Markup {
    let body = html! {
        h2 { "Workflow types" }
        ul id="types" {
            @for t in &w.types {
                li { a href={ "/workflows?" (query(&[("type", Some(t))])) } class=[(w.selected.as_deref() == Some(t)).then_some("current")] { (t) } }
            }
        }
        @if w.types.is_empty() { p.empty { "No workflow runs stored." } }
        @if let Some(t) = &w.selected {
            h2 { "Runs of " (t) }
            table id="runs" {
                thead { tr { th { "Workflow" } th { "Parent workflow" } } }
                tbody {
                    @for r in &w.runs {
                        tr { td { (wf_link(&r.workflow_id)) } td { @match &r.parent_workflow_id { Some(p) => (wf_link(p)), None => span.none { "—" } } } }
                    }
                }
            }
            @if let Some(next) = &w.next {
                p.pager { a id="next" href={ "/workflows?" (query(&[("type", Some(t)), ("after", Some(next))])) } { "Next page →" } }
            }
        }
    };
    page("Workflows", "/workflows", body)
}

pub(crate) fn tree(t: &Tree) -> Markup {
    let more = (t.budget * 2).min(5000);
    let body = html! {
        table.kv {
            tr { th { "Workflow" } td { code id="workflow-id" { (t.workflow_id) } } }
            tr { th { "Type" } td { (t.workflow_type.as_deref().unwrap_or("—")) } }
            tr { th { "Parent workflow" } td { @match &t.parent_workflow_id { Some(p) => (wf_link(p)), None => span.none { "—" } } } }
            tr { th { "Invocations" } td { (t.members_total) " — " a href={ "/invocations?" (query(&[("workflow", Some(&t.workflow_id))])) } { "list them" } } }
        }
        h2 { "Family tree" }
        p.note { @for (s, n) in &t.latest_counts { (status_badge(s)) " " (n) " " } }
        ul.tree id="tree" {
            @for n in &t.nodes {
                li class={ "depth-" (n.depth.min(20)) } data-id=(n.invocation_id) data-depth=(n.depth) {
                    (status_badge(&n.status)) " " (inv_link(&n.invocation_id)) " "
                    span.task { (n.task.as_deref().unwrap_or("(not stored)")) }
                    @if let Some(w) = &n.other_workflow { " " span.note { "in workflow " (wf_link(w)) } }
                    @if n.hidden_children > 0 { " " span.note { "+" (n.hidden_children) " more" } }
                }
            }
        }
        @if t.truncated {
            p id="more" { "Showing " (t.nodes.len()) " nodes. "
                a href={ (wf_href(&t.workflow_id)) "?" (query(&[("budget", Some(&more.to_string()))])) } { "Show more" } }
        }
        @if !t.unreached.is_empty() {
            h2 { "Not reached from the root" }
            ul id="unreached" { @for u in &t.unreached { li { (inv_link(u)) } } }
        }
        @if !t.sub_invocations.is_empty() {
            h2 { "Sub-invocations" }
            ul id="sub-invocations" { @for s in &t.sub_invocations { li { (inv_link(s)) } } }
        }
    };
    page("Workflow", "/workflows", body)
}

pub(crate) fn runners(r: &Runners) -> Markup {
    let body = html! {
        form id="search" method="get" action="/runners" {
            label { "Runner id contains " input name="q" value=(r.q); }
            button type="submit" { "Search" }
        }
        p.note { (r.total) " runner contexts match." }
        (runner_table(&r.runners, "runners"))
    };
    page("Runners", "/runners", body)
}

pub(crate) fn timeline(t: &Timeline) -> Markup {
    const LABEL: f64 = 260.0;
    const WIDTH: f64 = 1000.0;
    const LANE: f64 = 26.0;
    let height = (t.lanes.len() as f64 * LANE + 30.0).max(60.0);
    let plot = WIDTH - LABEL - 10.0;
    let body = html! {
        form id="range" method="get" action="/timeline" {
            label { "Since " input name="since" value=(t.since) size="32"; }
            label { "Until " input name="until" value=(t.until) size="32"; }
            button type="submit" { "Show" }
        }
        p.note { (t.rows) " history rows in " (t.lanes.len()) " runner lanes"
            @if t.truncated { " (the first " (t.limit) " only: narrow the range)" } "." }
        svg id="timeline" viewBox={ "0 0 " (WIDTH) " " (height) } width=(WIDTH) height=(height) role="img" {
            text x="0" y="14" class="axis" { (t.since) }
            text x=(WIDTH - 4.0) y="14" class="axis" text-anchor="end" { (t.until) }
            @for (i, lane) in t.lanes.iter().enumerate() {
                @let y = 24.0 + i as f64 * LANE;
                g class="lane" data-runner=(lane.runner_id) data-depth=(lane.depth) {
                    text x=(4.0 + lane.depth as f64 * 14.0) y=(y + 16.0) class="label" {
                        (crate::serve::params::clip(&lane.runner_id))
                        title { (lane.runner_id) " " (lane.runner_cls.as_deref().unwrap_or("")) }
                    }
                    line x1=(LABEL) x2=(WIDTH - 10.0) y1=(y + LANE - 2.0) y2=(y + LANE - 2.0) class="rule" {}
                    @for s in &lane.segments {
                        rect class={ "seg " (status_class(&s.status)) } data-status=(s.status)
                            x=(format!("{:.2}", LABEL + s.x * plot)) y=(y + 3.0)
                            width=(format!("{:.2}", (s.w * plot).max(2.0))) height=(LANE - 8.0) {
                            title { (s.invocation_id) ": " (s.status) " from " (s.start) }
                        }
                    }
                }
            }
        }
    };
    page("Timeline", "/timeline", body)
}
