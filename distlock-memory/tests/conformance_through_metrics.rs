//! The whole conformance suite again, through the metrics layer (`Metered`,
//! with resource labels): recording must not change any promise.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use common::{Layer, MemoryFixture};
use distlock_memory::MemoryStore;

async fn fixture() -> Option<MemoryFixture> {
    Some(MemoryFixture {
        store: MemoryStore::new(),
        layer: Layer::Metered,
    })
}

distlock_core::conformance_suite!(fixture());
