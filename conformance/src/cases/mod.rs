//! The cases: one plain function per behaviour, taking the engine as a trait
//! object. `suite!` turns each into a `#[test]` of the same name.
//!
//! Cases named `spec8_*` are SPEC §8 (the reference's own tests); `rule*_`
//! cases are SPEC §4 rules; the rest pin behaviour two engines could
//! otherwise disagree on.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod batches;
mod bulk;
mod concurrency;
mod helpers;
mod history_keys;
mod monitor;
mod ordering;
mod paging;
mod records;
mod retention;
mod spec8;
mod values;

pub use batches::*;
pub use bulk::*;
pub use concurrency::*;
pub use helpers::{
    assert_store_empty, hostile_strings, populate_everything,
    read_only_store_dry_runs_and_refuses_prune,
};
pub use history_keys::*;
pub use monitor::*;
pub use ordering::*;
pub use paging::*;
pub use records::*;
pub use retention::*;
pub use spec8::*;
pub use values::*;
