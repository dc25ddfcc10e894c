//! Retention (SPEC §10): deleting finished, old state while writers keep
//! writing.
//!
//! The unit of deletion is a **workflow tree**: the ids connected through
//! any link (an invocation's parent, workflow and parent workflow; a
//! stored workflow run's parent workflow; a workflow's sub-invocations),
//! with everything stored under them. A tree is *expired* at a cutoff when
//! every stored invocation in it has history whose latest record is final
//! and at or before the cutoff; history keyed by an id that is not a
//! stored invocation (an orphan) only needs its newest record at or
//! before the cutoff. A tree with an invocation without history, or with
//! no history at all, is never expired.
//!
//! The rules live here, once: an engine only offers a [`PruneTx`] (scan the
//! history time index up to the cutoff, describe ids, remove ids) inside a
//! transaction of its own ([`Engine::prune_transaction`](crate::engine::Engine::prune_transaction)),
//! and [`StateBackend::prune`](crate::StateBackend::prune) drives it chunk
//! by chunk: each chunk reads at most a bounded number of history rows and
//! decides and deletes at most [`PruneOptions::chunk`] trees in one
//! transaction, so writers wait for one chunk, never for the whole prune,
//! and an interrupted prune leaves every tree whole or gone.
//!
//! ```
//! use taskstate_core::prune::PruneOptions;
//! use taskstate_core::{StateBackend, Timestamp};
//!
//! fn drop_old(backend: &dyn StateBackend) -> taskstate_core::Result<u64> {
//!     let cutoff = Timestamp::now().add_micros(-30 * 86_400 * 1_000_000);
//!     let options = PruneOptions::new(cutoff).chunk(500);
//!     let counts = backend.prune(&options, &mut |_progress| {})?;
//!     Ok(counts.invocations)
//! }
//! ```

use std::collections::HashMap;
use std::ops::AddAssign;

use crate::engine::HistoryPos;
use crate::error::{Error, Result};
use crate::ids::InvocationId;
use crate::status::InvocationStatus;
use crate::time::{TimeKey, Timestamp};

/// Trees decided and deleted per transaction unless set otherwise: small
/// enough that a concurrent writer's p99 stays within tens of
/// milliseconds (`taskstate bench prune` on a 2-core VM: SQLite p99 34 ms
/// at 50 trees, 59 ms at 200; PostgreSQL 12 ms at 50, 185 ms at 200),
/// while throughput barely changes (SQLite ~4,000 invocations/s at 50 to
/// 200). Raise it when nothing else writes.
pub const DEFAULT_CHUNK: usize = 50;

/// The largest chunk accepted (a chunk is one transaction writers wait for).
pub const MAX_CHUNK: usize = 100_000;

/// What to prune.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PruneOptions {
    /// Trees whose latest records are all at or before this instant go.
    pub before: Timestamp,
    /// Report what would go without deleting anything.
    pub dry_run: bool,
    /// Trees decided and deleted per transaction (1..=[`MAX_CHUNK`]).
    pub chunk: usize,
}

impl PruneOptions {
    /// Prune everything finished at or before `before`, in chunks of
    /// [`DEFAULT_CHUNK`] trees.
    #[must_use]
    pub fn new(before: Timestamp) -> Self {
        Self {
            before,
            dry_run: false,
            chunk: DEFAULT_CHUNK,
        }
    }

    /// Sets [`PruneOptions::dry_run`].
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets [`PruneOptions::chunk`].
    #[must_use]
    pub fn chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk;
        self
    }

    /// The options' own rules: a chunk in range and a cutoff not in the
    /// future (a cutoff ahead of the clock would delete what just finished).
    pub fn check(&self) -> Result<()> {
        if self.chunk == 0 || self.chunk > MAX_CHUNK {
            return Err(Error::invalid(format!(
                "prune chunk must be 1..={MAX_CHUNK} trees, got {}",
                self.chunk
            )));
        }
        if self.before.key() > Timestamp::now().key() {
            return Err(Error::invalid(format!(
                "prune cutoff {} is in the future",
                self.before
            )));
        }
        Ok(())
    }
}

/// Rows deleted by a prune (or that a dry run would delete).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneCounts {
    /// Whole trees (a plain task is a tree of one; orphan keys count as
    /// trees of their own).
    pub trees: u64,
    /// Invocation rows.
    pub invocations: u64,
    /// History rows (every key's).
    pub history: u64,
    /// Results.
    pub results: u64,
    /// Exceptions.
    pub exceptions: u64,
    /// Stored workflow runs.
    pub workflow_runs: u64,
    /// Workflow sub-invocation links.
    pub sub_invocations: u64,
    /// Workflow data values.
    pub workflow_data: u64,
}

impl PruneCounts {
    /// The counts as `(name, value)` pairs, in a fixed order (for reports).
    #[must_use]
    pub fn fields(&self) -> [(&'static str, u64); 8] {
        [
            ("trees", self.trees),
            ("invocations", self.invocations),
            ("history", self.history),
            ("results", self.results),
            ("exceptions", self.exceptions),
            ("workflow_runs", self.workflow_runs),
            ("sub_invocations", self.sub_invocations),
            ("workflow_data", self.workflow_data),
        ]
    }

    /// Rows of any kind (every field but `trees`).
    #[must_use]
    pub fn rows(&self) -> u64 {
        self.fields().iter().skip(1).map(|(_, n)| n).sum()
    }
}

impl AddAssign for PruneCounts {
    fn add_assign(&mut self, o: Self) {
        self.trees += o.trees;
        self.invocations += o.invocations;
        self.history += o.history;
        self.results += o.results;
        self.exceptions += o.exceptions;
        self.workflow_runs += o.workflow_runs;
        self.sub_invocations += o.sub_invocations;
        self.workflow_data += o.workflow_data;
    }
}

/// Where a running prune is, reported after every chunk.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PruneProgress {
    /// What went (or, in a dry run, would go) so far.
    pub counts: PruneCounts,
    /// Trees examined and kept (something in them is live or recent).
    pub kept_trees: u64,
    /// History rows read from the time index.
    pub examined: u64,
    /// Transactions run.
    pub chunks: u64,
    /// The oldest history time key seen (the scan's start).
    pub oldest: Option<TimeKey>,
    /// The scan's position: every row before it was examined.
    pub position: Option<TimeKey>,
    /// The cutoff's time key (the scan's end).
    pub cutoff: TimeKey,
    /// Whether the scan reached the cutoff.
    pub done: bool,
}

impl PruneProgress {
    /// How far the scan is from the oldest row to the cutoff, in `0..=1`
    /// (by time, which is what an operator reasons in).
    #[must_use]
    pub fn fraction(&self) -> f64 {
        if self.done {
            return 1.0;
        }
        match (self.oldest, self.position) {
            (Some(o), Some(p)) if self.cutoff > o => ((p.seconds() - o.seconds())
                / (self.cutoff.seconds() - o.seconds()))
            .clamp(0.0, 1.0),
            _ => 0.0,
        }
    }
}

/// The space a store took before and after [`StateBackend::reclaim_space`](crate::StateBackend::reclaim_space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceReport {
    /// Bytes before.
    pub before_bytes: u64,
    /// Bytes after.
    pub after_bytes: u64,
}

/// The latest history record stored under a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latest {
    /// Its time key.
    pub time: TimeKey,
    /// Its status; `None` when the stored status is unreadable (treated as
    /// live: nothing is deleted on a guess).
    pub status: Option<InvocationStatus>,
}

/// What an engine stores for one id, as far as retention cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneNode {
    /// The id.
    pub id: InvocationId,
    /// Whether an invocation with this id is stored.
    pub invocation: bool,
    /// The latest (by time key, then insertion order) history row stored
    /// under this id as its key; `None` without history.
    pub latest: Option<Latest>,
    /// Every id linked to this one, both ways: its invocation's parent,
    /// workflow and parent workflow; invocations whose parent, workflow or
    /// parent workflow it is; its stored workflow run's parent workflow and
    /// the runs whose parent workflow it is; its workflow's sub-invocations
    /// and the workflows it is a sub-invocation of. Empty ids are left out;
    /// repeats are allowed.
    pub links: Vec<InvocationId>,
}

/// What an engine offers a prune inside one of its transactions
/// ([`Engine::prune_transaction`](crate::engine::Engine::prune_transaction)).
/// Everything it reads and deletes is one consistent view of the store.
pub trait PruneTx {
    /// Up to `limit` history rows with time key at or before `cutoff`,
    /// strictly after `after`, in position order: each row's position and
    /// key (the id it is stored under).
    fn scan(
        &mut self,
        cutoff: TimeKey,
        after: Option<HistoryPos>,
        limit: usize,
    ) -> Result<Vec<(HistoryPos, InvocationId)>>;

    /// A [`PruneNode`] for each of `ids` (any order, each once).
    fn nodes(&mut self, ids: &[InvocationId]) -> Result<Vec<PruneNode>>;

    /// Called in a real prune before anything is removed: from here on no
    /// concurrent write may change what [`PruneTx::nodes`] answers until
    /// the transaction ends. Returns whether writes could have changed it
    /// before (the transaction ran unlocked so far), in which case the
    /// trees about to go are described again and only those unchanged go.
    /// An engine whose transaction excludes writers from its start returns
    /// `false` (the default).
    fn lock(&mut self) -> Result<bool> {
        Ok(false)
    }

    /// Deletes everything stored under `ids` — invocations, history rows
    /// keyed by them, results, exceptions, workflow runs, sub-invocation
    /// links from or to them, workflow data — and returns the rows deleted
    /// (`trees` left 0). With `dry_run`, deletes nothing and returns what
    /// it would delete.
    fn remove(&mut self, ids: &[InvocationId], dry_run: bool) -> Result<PruneCounts>;
}

/// The ids met while exploring, as a union-find forest.
#[derive(Default)]
struct Graph {
    index: HashMap<InvocationId, usize>,
    parent: Vec<usize>,
    nodes: Vec<Option<PruneNode>>,
    frontier: Vec<InvocationId>,
}

impl Graph {
    /// The slot of `id`, queued for exploring when new.
    fn slot(&mut self, id: &InvocationId) -> usize {
        if let Some(&at) = self.index.get(id) {
            return at;
        }
        let at = self.parent.len();
        self.index.insert(id.clone(), at);
        self.parent.push(at);
        self.nodes.push(None);
        self.frontier.push(id.clone());
        at
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }
}

/// The components (trees) reachable from `seeds`, each as its nodes. Each
/// round describes every newly met id in one [`PruneTx::nodes`] call, so
/// the calls are as many as the trees are deep, however many trees.
fn trees(tx: &mut dyn PruneTx, seeds: &[InvocationId]) -> Result<Vec<Vec<PruneNode>>> {
    let mut g = Graph::default();
    for s in seeds {
        g.slot(s);
    }
    while !g.frontier.is_empty() {
        let batch = std::mem::take(&mut g.frontier);
        for node in tx.nodes(&batch)? {
            let Some(&at) = g.index.get(&node.id) else {
                continue;
            };
            for link in node.links.iter().filter(|l| !l.as_str().is_empty()) {
                let other = g.slot(link);
                g.union(at, other);
            }
            g.nodes[at] = Some(node);
        }
        // An id the engine did not describe holds nothing.
        for id in &batch {
            if let Some(&at) = g.index.get(id)
                && g.nodes[at].is_none()
            {
                g.nodes[at] = Some(PruneNode {
                    id: id.clone(),
                    invocation: false,
                    latest: None,
                    links: Vec::new(),
                });
            }
        }
    }
    let mut groups: HashMap<usize, Vec<PruneNode>> = HashMap::new();
    for at in 0..g.nodes.len() {
        let root = g.find(at);
        if let Some(node) = g.nodes[at].take() {
            groups.entry(root).or_default().push(node);
        }
    }
    Ok(groups.into_values().collect())
}

/// SPEC §10's rule: a tree goes when it holds history, every stored
/// invocation in it has history whose latest record is final and at or
/// before `cutoff`, and every other history key's newest record is at or
/// before `cutoff`.
#[must_use]
pub fn expired(tree: &[PruneNode], cutoff: TimeKey) -> bool {
    let mut dated = false;
    for node in tree {
        match node.latest {
            None if node.invocation => return false,
            None => {}
            Some(latest) => {
                dated = true;
                if latest.time > cutoff {
                    return false;
                }
                if node.invocation && !latest.status.is_some_and(InvocationStatus::is_final) {
                    return false;
                }
            }
        }
    }
    dated
}

/// Whether two descriptions of one id say the same (links in any order).
fn same_facts(a: &PruneNode, b: &PruneNode) -> bool {
    a.invocation == b.invocation && a.latest == b.latest && link_set(a) == link_set(b)
}

fn link_set(n: &PruneNode) -> Vec<&InvocationId> {
    let mut l: Vec<&InvocationId> = n.links.iter().filter(|x| !x.as_str().is_empty()).collect();
    l.sort_unstable();
    l.dedup();
    l
}

/// Whether a tree holds anything a count of trees should see.
fn holds_state(tree: &[PruneNode]) -> bool {
    tree.iter().any(|n| n.invocation || n.latest.is_some())
}

/// A prune's state between chunks (changed only once a chunk committed).
#[derive(Default)]
struct Scan {
    after: Option<HistoryPos>,
    /// Keys decided in this run, with their latest time key: skipped when
    /// the scan meets their other rows, forgotten once the scan has passed
    /// their latest row.
    decided: HashMap<InvocationId, TimeKey>,
    counts: PruneCounts,
    kept: u64,
    examined: u64,
    chunks: u64,
    oldest: Option<TimeKey>,
}

/// What one chunk found and did, applied to [`Scan`] once it committed.
struct Chunk {
    after: Option<HistoryPos>,
    decided: Vec<(InvocationId, TimeKey)>,
    counts: PruneCounts,
    kept: u64,
    examined: u64,
    oldest: Option<TimeKey>,
    done: bool,
}

/// History rows one chunk reads at most, per tree it may decide: enough
/// for the usual handful of records per invocation, bounded so a chunk
/// that meets only rows of kept trees still ends quickly.
const ROWS_PER_TREE: usize = 16;

fn run_chunk(
    tx: &mut dyn PruneTx,
    scan: &Scan,
    cutoff: TimeKey,
    options: &PruneOptions,
) -> Result<Chunk> {
    let limit = options.chunk;
    let mut seeds: Vec<InvocationId> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let (mut after, mut examined, mut oldest, mut done) = (scan.after, 0u64, None, false);
    let budget = (limit.saturating_mul(ROWS_PER_TREE)) as u64;
    'scan: while seeds.len() < limit && examined < budget {
        let page = tx.scan(cutoff, after, limit)?;
        let full = page.len() >= limit;
        for (pos, key) in page {
            oldest.get_or_insert(pos.0);
            after = Some(pos);
            examined += 1;
            if !scan.decided.contains_key(&key) && seen.insert(key.clone()) {
                seeds.push(key);
                if seeds.len() >= limit {
                    break 'scan;
                }
            }
        }
        if !full {
            done = true;
            break;
        }
    }
    let mut out = Chunk {
        after,
        decided: Vec::new(),
        counts: PruneCounts::default(),
        kept: 0,
        examined,
        oldest,
        done,
    };
    let mut expired_trees: Vec<Vec<PruneNode>> = Vec::new();
    for tree in trees(tx, &seeds)? {
        if expired(&tree, cutoff) {
            expired_trees.push(tree);
            continue;
        }
        if holds_state(&tree) {
            out.kept += 1;
        }
        // A kept tree's rows are still there for the scan to meet again.
        out.decided.extend(
            tree.iter()
                .filter_map(|n| Some((n.id.clone(), n.latest?.time))),
        );
    }
    if !options.dry_run && !expired_trees.is_empty() && tx.lock()? {
        // Judged before the engine's lock: only trees whose every fact is
        // unchanged under it go. A changed one is left undecided, so its
        // rows still ahead of the scan bring it back with fresh facts.
        let ids: Vec<InvocationId> = expired_trees
            .iter()
            .flatten()
            .map(|n| n.id.clone())
            .collect();
        let now: HashMap<InvocationId, PruneNode> = tx
            .nodes(&ids)?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        expired_trees.retain(|tree| {
            tree.iter()
                .all(|n| now.get(&n.id).is_some_and(|m| same_facts(n, m)))
        });
    }
    out.counts.trees = expired_trees.len() as u64;
    if options.dry_run {
        // Nothing is deleted: the scan will meet these rows again.
        out.decided.extend(
            expired_trees
                .iter()
                .flatten()
                .filter_map(|n| Some((n.id.clone(), n.latest?.time))),
        );
    }
    let doomed: Vec<InvocationId> = expired_trees
        .iter()
        .flatten()
        .map(|n| n.id.clone())
        .collect();
    if !doomed.is_empty() {
        let trees = out.counts.trees;
        out.counts = tx.remove(&doomed, options.dry_run)?;
        out.counts.trees = trees;
    }
    Ok(out)
}

/// Runs a prune on `engine` (the driver behind
/// [`StateBackend::prune`](crate::StateBackend::prune)).
pub(crate) fn run<E: crate::engine::Engine + ?Sized>(
    engine: &E,
    options: &PruneOptions,
    progress: &mut dyn FnMut(&PruneProgress),
) -> Result<PruneCounts> {
    options.check()?;
    let cutoff = options.before.key();
    let mut scan = Scan::default();
    loop {
        let mut outcome = None;
        engine.prune_transaction(!options.dry_run, &mut |tx| {
            outcome = Some(run_chunk(tx, &scan, cutoff, options)?);
            Ok(())
        })?;
        let Some(chunk) = outcome else {
            return Err(Error::Storage {
                message: format!("{}: prune transaction ran nothing", engine.engine_name()),
                source: None,
            });
        };
        scan.after = chunk.after;
        scan.counts += chunk.counts;
        scan.kept += chunk.kept;
        scan.examined += chunk.examined;
        scan.chunks += 1;
        if scan.oldest.is_none() {
            scan.oldest = chunk.oldest;
        }
        scan.decided.extend(chunk.decided);
        if let Some((at, _)) = scan.after {
            // Keys whose every row lies behind the scan cannot come back.
            scan.decided.retain(|_, latest| *latest >= at);
        }
        progress(&PruneProgress {
            counts: scan.counts,
            kept_trees: scan.kept,
            examined: scan.examined,
            chunks: scan.chunks,
            oldest: scan.oldest,
            position: scan.after.map(|(k, _)| k),
            cutoff,
            done: chunk.done,
        });
        if chunk.done {
            return Ok(scan.counts);
        }
    }
}

/// Deletes (or counts) the whole trees holding `ids`, whatever their
/// statuses, in one transaction (the driver behind
/// [`StateBackend::delete_trees`](crate::StateBackend::delete_trees)).
pub(crate) fn delete_trees<E: crate::engine::Engine + ?Sized>(
    engine: &E,
    ids: &[InvocationId],
    dry_run: bool,
) -> Result<PruneCounts> {
    let mut outcome = None;
    engine.prune_transaction(!dry_run, &mut |tx| {
        let found = trees(tx, ids)?;
        let all: Vec<InvocationId> = found.iter().flatten().map(|n| n.id.clone()).collect();
        let mut counts = if all.is_empty() {
            PruneCounts::default()
        } else {
            tx.remove(&all, dry_run)?
        };
        counts.trees = found.iter().filter(|t| holds_state(t)).count() as u64;
        outcome = Some(counts);
        Ok(())
    })?;
    Ok(outcome.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, invocation: bool, latest: Option<(f64, InvocationStatus)>) -> PruneNode {
        PruneNode {
            id: InvocationId::new(id),
            invocation,
            latest: latest.map(|(t, s)| Latest {
                time: TimeKey::from_seconds(t),
                status: Some(s),
            }),
            links: Vec::new(),
        }
    }

    #[test]
    fn expiry_rule() {
        use InvocationStatus as S;
        let c = TimeKey::from_seconds(100.0);
        assert!(expired(&[node("a", true, Some((100.0, S::Success)))], c));
        assert!(!expired(&[node("a", true, Some((100.5, S::Success)))], c));
        assert!(!expired(&[node("a", true, Some((50.0, S::Running)))], c));
        assert!(!expired(&[node("a", true, None)], c));
        // An orphan key needs only its newest row old enough.
        assert!(expired(&[node("o", false, Some((10.0, S::Running)))], c));
        // Nothing dated: never expired.
        assert!(!expired(&[node("w", false, None)], c));
        assert!(!expired(&[], c));
        let mut unreadable = node("a", true, Some((1.0, S::Success)));
        if let Some(l) = unreadable.latest.as_mut() {
            l.status = None;
        }
        assert!(!expired(&[unreadable], c));
        assert!(expired(
            &[
                node("a", true, Some((1.0, S::Failed))),
                node("b", true, Some((2.0, S::ConcurrencyControlledFinal))),
                node("w", false, None),
            ],
            c
        ));
    }

    /// A store of two finished plain tasks, `a` and `b`, where a write
    /// lands between the examination and the lock: `b` gains a child.
    struct Racy {
        locked: bool,
        removed: Vec<InvocationId>,
    }

    impl PruneTx for Racy {
        fn scan(
            &mut self,
            _cutoff: TimeKey,
            after: Option<HistoryPos>,
            _limit: usize,
        ) -> Result<Vec<(HistoryPos, InvocationId)>> {
            Ok(match after {
                None => vec![
                    ((TimeKey::from_seconds(1.0), 1), InvocationId::new("a")),
                    ((TimeKey::from_seconds(2.0), 2), InvocationId::new("b")),
                ],
                Some(_) => Vec::new(),
            })
        }

        fn nodes(&mut self, ids: &[InvocationId]) -> Result<Vec<PruneNode>> {
            Ok(ids
                .iter()
                .map(|id| {
                    let mut n = node(id.as_str(), true, Some((1.0, InvocationStatus::Success)));
                    if self.locked && id.as_str() == "b" {
                        n.links.push(InvocationId::new("b-child"));
                    }
                    n
                })
                .collect())
        }

        fn lock(&mut self) -> Result<bool> {
            self.locked = true;
            Ok(true)
        }

        fn remove(&mut self, ids: &[InvocationId], dry_run: bool) -> Result<PruneCounts> {
            assert!(!dry_run);
            self.removed.extend(ids.iter().cloned());
            Ok(PruneCounts {
                invocations: ids.len() as u64,
                ..PruneCounts::default()
            })
        }
    }

    #[test]
    fn a_tree_changed_before_the_lock_is_not_removed() {
        let mut tx = Racy {
            locked: false,
            removed: Vec::new(),
        };
        let options = PruneOptions::new(Timestamp::from_micros(100_000_000)).chunk(10);
        let chunk = run_chunk(
            &mut tx,
            &Scan::default(),
            TimeKey::from_seconds(100.0),
            &options,
        )
        .unwrap();
        assert!(tx.locked);
        assert_eq!(tx.removed, [InvocationId::new("a")]);
        assert_eq!((chunk.counts.trees, chunk.counts.invocations), (1, 1));
        // Neither kept nor decided: met again, it is judged afresh.
        assert_eq!(chunk.kept, 0);
        assert!(chunk.decided.is_empty());
    }

    #[test]
    fn options_rules() {
        let past = Timestamp::from_micros(0);
        assert!(PruneOptions::new(past).check().is_ok());
        assert!(PruneOptions::new(past).chunk(0).check().is_err());
        assert!(
            PruneOptions::new(past)
                .chunk(MAX_CHUNK + 1)
                .check()
                .is_err()
        );
        let future = Timestamp::now().add_micros(3_600_000_000);
        let err = PruneOptions::new(future).check().unwrap_err();
        assert!(err.to_string().contains("in the future"), "{err}");
    }

    #[test]
    fn progress_fraction() {
        let p = PruneProgress {
            counts: PruneCounts::default(),
            kept_trees: 0,
            examined: 0,
            chunks: 1,
            oldest: Some(TimeKey::from_seconds(0.0)),
            position: Some(TimeKey::from_seconds(25.0)),
            cutoff: TimeKey::from_seconds(100.0),
            done: false,
        };
        assert!((p.fraction() - 0.25).abs() < 1e-9);
        assert_eq!(PruneProgress { done: true, ..p }.fraction(), 1.0);
    }
}
