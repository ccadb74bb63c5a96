//! The whole conformance suite again, through the `Retrying` layer: wrappers
//! must keep every promise of the locker they wrap.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use common::{Layer, MemoryFixture};
use distlock_memory::MemoryStore;

async fn fixture() -> Option<MemoryFixture> {
    Some(MemoryFixture {
        store: MemoryStore::new(),
        layer: Layer::Retrying,
    })
}

distlock_core::conformance_suite!(fixture());
