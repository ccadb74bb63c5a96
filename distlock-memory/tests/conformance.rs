//! The whole conformance suite against the in-process backend.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use common::{Layer, MemoryFixture};
use distlock_memory::MemoryStore;

async fn fixture() -> Option<MemoryFixture> {
    Some(MemoryFixture {
        store: MemoryStore::new(),
        layer: Layer::None,
    })
}

distlock_core::conformance_suite!(fixture());
