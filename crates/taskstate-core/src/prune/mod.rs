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

mod driver;

pub(crate) use driver::{delete_trees, run};
