//! Core of **taskstate**: the domain model of a distributed task system's
//! state and the [`StateBackend`] trait every storage engine implements.
//!
//! This crate does no I/O and depends on no engine. It holds:
//! - id newtypes with their key forms ([`InvocationId`], [`TaskId`],
//!   [`CallId`], [`RunnerId`]) and the args id ([`SerializedArguments::args_id`]);
//! - the records a backend stores ([`InvocationDTO`], [`CallDTO`],
//!   [`InvocationHistory`], [`RunnerContext`], [`AppInfo`]...) with JSON
//!   forms byte-identical to pynenc's;
//! - the status machine as data ([`InvocationStatus`], [`validate_chain`],
//!   [`check_ownership`]);
//! - the [`Error`] type and the [`StateBackend`] trait.
//!
//! ```
//! use taskstate_core::*;
//! let task: TaskId = "shop.orders.process_order".parse()?;
//! let call = CallDTO::new(task.clone(), SerializedArguments::from_pairs([("order_id", "1")]));
//! let id = InvocationId::new("inv-1");
//! let inv = InvocationDTO {
//!     invocation_id: id.clone(),
//!     call_id: call.call_id.clone(),
//!     workflow: WorkflowIdentity { workflow_id: id, workflow_type: task, parent_workflow_id: None },
//!     parent_invocation_id: None,
//! };
//! taskstate_core::engine::check_invocation_pair(&inv, &call)?;
//! # Ok::<(), Error>(())
//! ```

mod backend;
pub mod bulk;
mod dto;
pub mod engine;
mod error;
mod ids;
pub mod monitor;
pub mod prune;
pub mod pyjson;
mod redact;
mod rules;
mod status;
mod time;

pub use backend::{
    Cursor, DEFAULT_PAGE_SIZE, HistoryRow, Page, Pages, StateBackend, StoredHistory, WorkflowData,
};
pub use bulk::{KeyRange, Kind, Row, Snapshot};
pub use dto::{
    AppInfo, CallDTO, InvocationDTO, InvocationHistory, InvocationRecord, InvocationStatusRecord,
    RecentIds, RunnerContext, SerializedArguments, SharedText, WorkflowIdentity, args_id,
};
pub use error::{BoxError, Entity, Error, ErrorKind, KeyError, Result};
pub use ids::{AppId, CallId, InvocationId, RunnerId, TaskId};
pub use monitor::{InvocationFilter, InvocationSummary, StatusCounts};
pub use prune::{PruneCounts, PruneOptions, PruneProgress, SpaceReport};
pub use redact::redact_url;
pub use rules::MAX_ID_BYTES;
pub use status::{
    ChainError, InvocationStatus, OwnershipError, StatusFlags, check_ownership, validate_chain,
};
pub use time::{TimeKey, TimeRange, Timestamp};
