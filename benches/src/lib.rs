//! Criterion benches of taskstate live in `benches/engines.rs`; this crate
//! has no library code. Run `cargo bench -p taskstate-benches`.
