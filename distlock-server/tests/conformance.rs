//! The whole conformance suite through an in-process server over memory.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::ServerFixture;

async fn fixture() -> Option<ServerFixture> {
    Some(ServerFixture::new().await)
}

distlock_core::conformance_suite!(fixture());
