//! The memory engine runs the whole conformance suite.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use taskstate_conformance::Factory;
use taskstate_memory::MemoryBackend;

struct Memory;

impl Factory for Memory {
    type Backend = MemoryBackend;
    type Guard = ();

    fn create() -> Option<(MemoryBackend, ())> {
        Some((MemoryBackend::new(), ()))
    }
}

taskstate_conformance::suite!(Memory);
