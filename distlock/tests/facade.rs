//! The front door: connect by URL, hints for backends not built in, and the
//! conformance suite through the facade's own path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use distlock::{Error, LockOptions};

#[tokio::test]
async fn connect_by_url_and_lock() {
    let locker = distlock::connect("memory://facade").await.expect("memory");
    let lock = locker
        .lock("facade/r", &LockOptions::new())
        .await
        .expect("lock");
    assert!(lock.token() > 0);
    lock.release().await.expect("release");
}

#[tokio::test]
async fn a_backend_not_built_in_names_its_feature() {
    for (feature, schemes) in distlock::BACKENDS {
        let url = format!("{}://127.0.0.1:1/x", schemes[0]);
        let served = distlock::registry().schemes().contains(&schemes[0]);
        if served {
            continue;
        }
        match distlock::connect(&url).await {
            Err(Error::InvalidUrl { reason, .. }) => {
                assert!(reason.contains(&format!("feature `{feature}`")), "{reason}");
            }
            other => panic!("{url}: expected InvalidUrl naming the feature, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_misspelt_scheme_gets_a_suggestion() {
    let error = distlock::connect("memroy://").await.unwrap_err();
    assert!(
        error.to_string().contains("did you mean `memory://`"),
        "{error}"
    );
}
