//! The driver of a prune: exploring trees through [`PruneTx::nodes`],
//! chunking, the scan cursor and the keys already decided.

use std::collections::HashMap;

use super::{PruneCounts, PruneNode, PruneOptions, PruneProgress, PruneTx, expired};
use crate::engine::HistoryPos;
use crate::error::{Error, Result};
use crate::ids::InvocationId;
use crate::time::TimeKey;

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
    use crate::prune::{Latest, MAX_CHUNK};
    use crate::status::InvocationStatus;
    use crate::time::Timestamp;

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
