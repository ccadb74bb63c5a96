//! Push wake-up: etcd watches. A waiter of the polling path watches the
//! resource's deletions ([`next_release`]); the queue watches its predecessor
//! (see the `queue` module).

use distlock_core::{Error, Result, Wakeup};
use etcd_client::{WatchFilterType, WatchOptions, WatchStream};

use crate::EtcdStore;
use crate::error::{BACKEND, Op};

/// A wake-up for the next deletion of a key of `resource` (a release, an
/// expiry, an eviction), armed before this returns.
pub(crate) async fn next_release(store: &EtcdStore, resource: &str) -> Result<Wakeup> {
    let prefix = store.inner.layout.resource_prefix(resource);
    let options = WatchOptions::new()
        .with_prefix()
        .with_filters([WatchFilterType::NoPut]);
    let mut watch = Watch::open(store, prefix, options, resource).await?;
    Ok(Box::pin(async move {
        let _ = watch.next_wake().await;
    }))
}

/// A watch whose first answer (`created`) has arrived: events after its start
/// revision are not missed.
pub(crate) struct Watch {
    stream: WatchStream,
    /// For mapping errors.
    store: EtcdStore,
}

impl Watch {
    pub(crate) async fn open(
        store: &EtcdStore,
        key: Vec<u8>,
        options: WatchOptions,
        resource: &str,
    ) -> Result<Watch> {
        let mut stream = store
            .retry(|client| {
                let (mut client, key, options) =
                    (client.watch_client(), key.clone(), options.clone());
                async move { client.watch(key, Some(options)).await }
            })
            .await
            .map_err(|e| store.map_error(e, Op::Read, resource))?;
        match stream.message().await {
            Ok(Some(answer)) if answer.created() => Ok(Watch {
                stream,
                store: store.clone(),
            }),
            Ok(Some(answer)) => Err(Error::store(
                BACKEND,
                format!("watch refused: {}", answer.cancel_reason()),
            )),
            Ok(None) => Err(Error::unavailable(
                BACKEND,
                "watch stream closed before it was created",
            )),
            Err(e) => Err(store.map_error(e, Op::Read, resource)),
        }
    }

    /// Completes on the next event (or a cancelled watch: compaction), which is
    /// the caller's cue to re-check. Cancel safe.
    pub(crate) async fn next_wake(&mut self) -> Result<()> {
        loop {
            match self.stream.message().await {
                Ok(Some(answer)) if answer.canceled() || !answer.events().is_empty() => {
                    return Ok(());
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(Error::unavailable(BACKEND, "watch stream ended"));
                }
                Err(e) => return Err(self.store.map_error(e, Op::Read, "")),
            }
        }
    }
}
