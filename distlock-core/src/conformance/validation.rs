//! Bad input: every kind gets a typed error and loses nothing.

use std::time::Duration;

use bytes::Bytes;

use super::Fixture;
use super::support::{Ctx, SOON, assert_invalid, long, manual, take, within};
use crate::{Error, LeaseKey, LockOptions, parse_url};

/// Bad names are `InvalidArgument("resource")` on every call, before any I/O.
pub async fn invalid_resource_names_are_rejected(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let locker = &ctx.locker;
    let too_long = "x".repeat(ctx.caps().max_resource_len + 1);
    for bad in ["", too_long.as_str(), "nul\0inside", "new\nline", "\u{7f}"] {
        let context = format!("resource {:?}", bad.get(..20).unwrap_or(bad));
        assert_invalid(locker.try_lock(bad, &long()).await, "resource", &context);
        assert_invalid(
            locker.lock(bad, &long().with_wait_timeout(SOON)).await,
            "resource",
            &context,
        );
        assert_invalid(locker.info(bad).await, "resource", &context);
        assert_invalid(locker.read(bad).await, "resource", &context);
        assert_invalid(
            locker.release(bad, LeaseKey::random()).await,
            "resource",
            &context,
        );
        assert_invalid(
            locker
                .refresh(bad, LeaseKey::random(), Duration::from_secs(30))
                .await,
            "resource",
            &context,
        );
    }
    assert_invalid(locker.list("bad\0prefix").await, "prefix", "list prefix");
    // The longest valid name works.
    let longest = format!(
        "{}{}",
        ctx.prefix,
        "y".repeat(ctx.caps().max_resource_len - ctx.prefix.len())
    );
    let lock = take(&**locker, &longest, &long()).await;
    lock.release().await.expect("release");
    let unicode = ctx.name("ünïcødé/ロック/🔒");
    let lock = take(&**locker, &unicode, &long()).await;
    assert_eq!(
        locker.list(&ctx.prefix).await.expect("list"),
        vec![unicode.clone()]
    );
    lock.release().await.expect("release");
}

/// TTLs below the backend's minimum or above its maximum are rejected.
pub async fn ttl_out_of_range_is_rejected(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let caps = ctx.caps();
    let r = ctx.name("ttl");
    for ttl in [
        Duration::ZERO,
        caps.min_ttl / 2,
        caps.max_ttl + Duration::from_secs(1),
        Duration::MAX,
    ] {
        let options = LockOptions::new().with_ttl(ttl);
        assert_invalid(
            ctx.locker.try_lock(&r, &options).await,
            "ttl",
            &format!("ttl {ttl:?}"),
        );
        assert_invalid(
            ctx.locker.refresh(&r, LeaseKey::random(), ttl).await,
            "ttl",
            &format!("refresh ttl {ttl:?}"),
        );
    }
    let lock = take(
        &*ctx.locker,
        &r,
        &manual(caps.min_ttl.max(Duration::from_millis(300))),
    )
    .await;
    lock.release().await.expect("release");
}

/// Zero permits, or more than the backend allows, are rejected.
pub async fn zero_or_too_many_permits_are_rejected(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("permits-bad");
    let max = ctx.caps().max_permits;
    for permits in [0, max.saturating_add(1)] {
        if permits == max && max == u32::MAX {
            continue;
        }
        assert_invalid(
            ctx.locker.try_lock(&r, &long().with_permits(permits)).await,
            "permits",
            &format!("{permits} permits"),
        );
    }
}

/// Data above the backend's limit is rejected; at the limit it is kept whole.
pub async fn oversized_data_is_rejected(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("data");
    let max = ctx.caps().max_data_len;
    let too_big = Bytes::from(vec![7u8; max + 1]);
    assert_invalid(
        ctx.locker.try_lock(&r, &long().with_data(too_big)).await,
        "data",
        "data",
    );
    let biggest = Bytes::from(vec![7u8; max.min(64 * 1024)]);
    let lock = take(&*ctx.locker, &r, &long().with_data(biggest.clone())).await;
    assert_eq!(ctx.locker.read(&r).await.expect("read"), Some(biggest));
    lock.release().await.expect("release");
}

/// A refresh interval of zero, or not shorter than the TTL, is rejected.
pub async fn refresh_interval_must_fit_in_the_ttl(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("interval");
    let ttl = Duration::from_secs(30);
    for interval in [Duration::ZERO, ttl, ttl * 2] {
        let options = LockOptions::new()
            .with_ttl(ttl)
            .with_refresh_interval(interval);
        assert_invalid(
            ctx.locker.try_lock(&r, &options).await,
            "refresh interval",
            &format!("interval {interval:?}"),
        );
    }
}

/// Owner identities that are too long or have control characters are rejected.
pub async fn bad_owner_is_rejected(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("owner");
    for owner in ["x".repeat(crate::MAX_OWNER_LEN + 1), "tab\there".to_owned()] {
        assert_invalid(
            ctx.locker.try_lock(&r, &long().with_owner(owner)).await,
            "owner",
            "owner",
        );
    }
}

/// A burst of bad requests against a held lock changes nothing about it.
pub async fn bad_input_loses_nothing(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("intact");
    let lock = take(
        &*ctx.locker,
        &r,
        &long().with_data("mine").with_owner("owner-a"),
    )
    .await;
    let other = ctx.other().await;
    let _ = other.try_lock(&r, &long().with_permits(2)).await;
    let _ = other
        .try_lock(&r, &LockOptions::new().with_ttl(Duration::ZERO))
        .await;
    let _ = other.release(&r, LeaseKey::random()).await;
    let _ = other
        .refresh(&r, LeaseKey::random(), Duration::from_secs(1))
        .await;
    let _ = other
        .lock(&r, &long().with_permits(0).with_wait_timeout(SOON))
        .await;
    assert!(!lock.is_lost());
    let info = other.info(&r).await.expect("info").expect("still held");
    assert_eq!(info.token(), Some(lock.token()));
    assert_eq!(info.owner(), Some("owner-a"));
    assert_eq!(
        other.read(&r).await.expect("read"),
        Some(Bytes::from("mine"))
    );
    lock.release()
        .await
        .expect("the holder's release still works");
}

/// Malformed URLs are `InvalidUrl`, and the message never shows a password.
pub async fn bad_urls_are_rejected(fixture: &dyn Fixture) {
    let (Some(connector), urls) = (fixture.connector(), fixture.bad_urls()) else {
        eprintln!("bad_urls_are_rejected: this fixture has no connector; nothing to check");
        return;
    };
    assert!(
        !urls.is_empty(),
        "a fixture with a connector must list bad URLs"
    );
    for url in urls {
        let parsed = match parse_url(&url) {
            Ok(parsed) => parsed,
            Err(Error::InvalidUrl { url: shown, .. }) => {
                assert!(!shown.contains("hunter2"), "password shown in {shown}");
                continue;
            }
            Err(other) => panic!("{url}: expected InvalidUrl, got {other}"),
        };
        match within("connect to a bad URL", SOON, connector.connect(&parsed)).await {
            Err(error @ Error::InvalidUrl { .. }) => {
                let text = format!("{error} {error:?}");
                assert!(!text.contains("hunter2"), "password shown in `{text}`");
            }
            Err(other) => panic!("{url}: expected InvalidUrl, got {other}"),
            Ok(_) => panic!("{url}: a bad URL was accepted"),
        }
    }
}

/// An unreachable store is a transient error within bounded time, never a grant.
pub async fn unreachable_store_is_a_transient_error(fixture: &dyn Fixture) {
    let (Some(connector), Some(url)) = (fixture.connector(), fixture.unreachable_url()) else {
        eprintln!("unreachable_store_is_a_transient_error: not applicable to this backend");
        return;
    };
    let parsed = parse_url(&url).expect("the fixture's unreachable URL parses");
    let outcome = within("an answer from an unreachable store", SOON * 6, async {
        let locker = connector.connect(&parsed).await?;
        locker
            .try_lock("conformance/unreachable", &long())
            .await
            .map(|lock| lock.is_some())
    })
    .await;
    match outcome {
        Err(error) => assert!(
            error.is_transient(),
            "expected a transient error, got {error}"
        ),
        Ok(granted) => panic!("an unreachable store answered (granted: {granted})"),
    }
}

/// A random name: printable ASCII with the characters stores treat specially
/// (`%`, `_`, `*`, `{`, `}`, `/`, `\\`, `'`, `"`), Unicode, sometimes a control
/// character, sometimes at or past the length limit.
fn random_name(rng: &mut fastrand::Rng, max_len: usize) -> String {
    const SPECIAL: &[char] = &[
        '%', '_', '*', '?', '[', ']', '{', '}', '/', '\\', '\'', '"', ':', ' ', '.', '-', 'é', 'ß',
        'ロ', '🔒', '\u{200b}', '\u{feff}',
    ];
    let len = match rng.u8(..10) {
        0 => 0,
        1 => max_len + rng.usize(1..8),
        2 => max_len,
        _ => rng.usize(1..24),
    };
    let mut name = String::new();
    while name.len() < len {
        let c = match rng.u8(..20) {
            0 => char::from(rng.u8(0..32)),
            1..=6 => SPECIAL[rng.usize(..SPECIAL.len())],
            _ => rng.alphanumeric(),
        };
        if name.len() + c.len_utf8() > len && len <= max_len {
            break;
        }
        name.push(c);
    }
    name
}

/// Property test: random names, TTLs, permits and data sizes always get a
/// typed answer (no panic, no hang); valid ones work and free what they take;
/// a lock held throughout is untouched by all of it. (Random URLs are only
/// parsed, never connected to: a random host name would mean a DNS query.)
pub async fn random_input_gets_typed_answers_and_loses_nothing(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let caps = ctx.caps();
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let guard_name = ctx.name("guard");
    let guard = take(&*ctx.locker, &guard_name, &long().with_data("guarded")).await;
    let max_name = caps.max_resource_len - ctx.prefix.len();
    for round in 0..60 {
        let suffix = random_name(&mut rng, max_name);
        let resource = format!("{}{suffix}", ctx.prefix);
        let name_ok = crate::validate_resource(&resource, caps.max_resource_len).is_ok();
        let ttl = match rng.u8(..6) {
            0 => Duration::from_millis(rng.u64(0..=1000)),
            1 => caps.max_ttl + Duration::from_secs(rng.u64(1..1000)),
            _ => caps.min_ttl.max(Duration::from_secs(1)) + Duration::from_millis(rng.u64(0..5000)),
        };
        let permits = match rng.u8(..6) {
            0 => 0,
            1 => caps.max_permits.saturating_add(1),
            _ => rng.u32(1..4),
        };
        let data = Bytes::from(vec![b'd'; rng.usize(0..256)]);
        let options = LockOptions::new()
            .with_ttl(ttl)
            .with_permits(permits)
            .with_data(data);
        let options_ok = options.validate(&caps).is_ok();
        let context =
            format!("seed {seed} round {round}: {resource:?} ttl {ttl:?} permits {permits}");
        let answer = within(&context, SOON, ctx.locker.try_lock(&resource, &options)).await;
        match answer {
            Ok(Some(lock)) => {
                assert!(name_ok && options_ok, "{context}: bad input was granted");
                assert_eq!(
                    ctx.locker.read(&resource).await.expect("read"),
                    Some(options.data.clone()),
                    "{context}"
                );
                lock.release()
                    .await
                    .unwrap_or_else(|e| panic!("{context}: release: {e}"));
                assert!(
                    ctx.locker.info(&resource).await.expect("info").is_none(),
                    "{context}: still held after release"
                );
            }
            Ok(None) => panic!("{context}: a fresh name was found held"),
            Err(Error::InvalidArgument { .. }) => {
                assert!(
                    !(name_ok && options_ok),
                    "{context}: valid input refused as invalid"
                );
            }
            Err(other) => panic!("{context}: unexpected error {other}"),
        }
        // Every read-only call answers with a value or a typed error.
        let _ = within(&context, SOON, ctx.locker.info(&resource)).await;
        let _ = within(&context, SOON, ctx.locker.list(&resource)).await;
        let _ = within(
            &context,
            SOON,
            ctx.locker.release(&resource, LeaseKey::random()),
        )
        .await;
    }
    // URLs: parsing random text never panics and never echoes a password.
    for _ in 0..200 {
        let url = format!("x://u:hunter2@{}", random_name(&mut rng, 60));
        if let Err(error) = parse_url(&url) {
            assert!(!format!("{error} {error:?}").contains("hunter2"), "{error}");
        }
    }
    assert!(!guard.is_lost(), "the guarded lock was lost");
    let info = ctx
        .locker
        .info(&guard_name)
        .await
        .expect("info")
        .expect("guard held");
    assert_eq!(info.token(), Some(guard.token()));
    assert_eq!(
        ctx.locker.read(&guard_name).await.expect("read"),
        Some(Bytes::from("guarded"))
    );
    guard.release().await.expect("release");
}
