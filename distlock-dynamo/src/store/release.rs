//! Release (one conditional write, retried here) and evict (an operator's
//! force release).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use distlock_core::{Backoff, Error, LeaseKey, Result};

use super::{DynamoStore, WriteError, names};
use crate::error::{BACKEND, map_sdk};
use crate::layout::{
    ATTRS, EXPIRES_AT, FENCE, HOLDERS, PERMITS, RVN, Snapshot, TTL, n, new_rvn, s,
};

/// The most mutex tokens remembered for [`DynamoStore::release_key`]'s put
/// (a detached lease is never released, so its entry stays): past this,
/// grants are not remembered and their release takes the update path.
const MAX_REMEMBERED: usize = 100_000;

impl DynamoStore {
    pub(super) fn remember_token(&self, key: LeaseKey, token: u64) {
        if let Ok(mut tokens) = self.inner.mutex_tokens.lock()
            && tokens.len() < MAX_REMEMBERED
        {
            tokens.insert(key, token);
        }
    }

    pub(super) fn forget_token(&self, key: LeaseKey) -> Option<u64> {
        self.inner
            .mutex_tokens
            .lock()
            .ok()
            .and_then(|mut tokens| tokens.remove(&key))
    }

    /// End a mutex lease whose token we know by rewriting the item as free:
    /// one `PutItem` of the key, the fence (our token: a mutex's fence is its
    /// holder's) and the cleanup time, if the item holds our lease unexpired by
    /// our clock, is a mutex and carries no user attributes. Success means the
    /// lease was held, so no old item is asked for (returning it is what costs
    /// most on an emulator); a failed condition returns it, for the caller to
    /// see why. Cheaper than removing a map entry, and it leaves the item in
    /// the shape the acquire fast path takes in one request.
    pub(super) async fn put_release(
        &self,
        resource: &str,
        key: &str,
        token: u64,
    ) -> std::result::Result<PutItemOutput, SdkError<PutItemError, HttpResponse>> {
        let mut names = names(&[
            ("#h", HOLDERS),
            ("#e", EXPIRES_AT),
            ("#p", PERMITS),
            ("#a", ATTRS),
        ]);
        names.insert("#k".to_owned(), key.to_owned());
        let now_ms = self.now_ms();
        let mut record = HashMap::with_capacity(3);
        record.insert(self.hash_key().to_owned(), s(resource));
        record.insert(FENCE.to_owned(), n(token));
        record.insert(TTL.to_owned(), self.ttl_value(now_ms));
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(record))
            .condition_expression("#h.#k.#e > :now AND #p = :one AND attribute_not_exists(#a)")
            .set_expression_attribute_names(Some(names))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .customize()
            .config_override(no_sdk_retries())
            .send()
            .await
    }

    /// Whether an item (as it was before a release) held `key` unexpired by
    /// our clock.
    pub(super) fn held_in(&self, old: Option<&HashMap<String, AttributeValue>>, key: &str) -> bool {
        old.and_then(|a| a.get(HOLDERS))
            .and_then(|h| h.as_m().ok())
            .and_then(|h| h.get(key))
            .and_then(|e| e.as_m().ok())
            .and_then(|e| e.get(EXPIRES_AT))
            .and_then(|e| e.as_n().ok())
            .and_then(|e| e.parse::<i64>().ok())
            .is_some_and(|e| e > self.now_ms())
    }

    /// End one lease: one conditional write. A mutex this store granted is
    /// rewritten free with a `PutItem` ([`Self::put_release`]); any other lease
    /// (a semaphore's, one granted elsewhere, one with user attributes) has its
    /// entry removed with an `UpdateItem`. Retried here (not by the SDK) so that
    /// a retry that finds the lease gone can say the outcome is unknown instead
    /// of "not held".
    pub(super) async fn release_key(&self, resource: &str, lease_key: LeaseKey) -> Result<bool> {
        let op = self.op("release", resource, true);
        let key = lease_key.to_hex();
        let mut token = self.forget_token(lease_key);
        let attempts = self.inner.config.max_attempts;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut attempt = 1;
        loop {
            let outcome = match token {
                Some(fence) => match self.put_release(resource, &key, fence).await {
                    Ok(_) => return Ok(true),
                    Err(error) => match self.put_error(op, error) {
                        // Still ours, but expired by our clock or not a plain
                        // mutex any more (user attributes): remove the entry
                        // instead, now.
                        WriteError::Condition(Some(old))
                            if old
                                .get(HOLDERS)
                                .and_then(|h| h.as_m().ok())
                                .is_some_and(|h| h.contains_key(&key)) =>
                        {
                            token = None;
                            continue;
                        }
                        other => other,
                    },
                },
                None => match self.remove_entry(resource, &key).await {
                    // Held if the removed lease had not expired by our clock.
                    Ok(old) => return Ok(self.held_in(old.as_ref(), &key)),
                    Err(error) => self.write_error(op, error),
                },
            };
            let error = match outcome {
                WriteError::Condition(_) if attempt == 1 => return Ok(false),
                WriteError::Condition(_) => return Err(release_unknown(resource)),
                WriteError::Other(error) => error,
            };
            if !error.is_transient() || attempt >= attempts {
                return Err(error);
            }
            attempt += 1;
            tokio::time::sleep(backoff.next_pause()).await;
        }
    }

    /// `REMOVE dl_holders.#key` if the entry exists; the entry as it was.
    pub(super) async fn remove_entry(
        &self,
        resource: &str,
        key: &str,
    ) -> std::result::Result<
        Option<HashMap<String, AttributeValue>>,
        SdkError<UpdateItemError, HttpResponse>,
    > {
        let mut names = names(&[("#h", HOLDERS)]);
        names.insert("#k".to_owned(), key.to_owned());
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(self.key(resource)))
            .update_expression("REMOVE #h.#k")
            .condition_expression("attribute_exists(#h.#k)")
            .set_expression_attribute_names(Some(names))
            .return_values(ReturnValue::UpdatedOld)
            .customize()
            .config_override(no_sdk_retries())
            .send()
            .await
            .map(|output| output.attributes)
    }

    /// [`Store::evict`](distlock_core::Store::evict): empty the holder map in
    /// one `UpdateItem`, keeping the item and its fence (`dl_fence`), so the
    /// next grant's token is higher. Returns how many holders were live (by
    /// this client's clock and skew allowance). The evicted holders see their
    /// lease gone at their next refresh.
    pub(super) async fn evict_all(&self, resource: &str) -> Result<usize> {
        let op = self.op("evict", resource, true);
        let mut values = HashMap::new();
        values.insert(":em".to_owned(), AttributeValue::M(HashMap::new()));
        values.insert(":rvn".to_owned(), new_rvn());
        let answer = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(self.key(resource)))
            .update_expression("SET #h = :em, #r = :rvn")
            .condition_expression("attribute_exists(#pk)")
            .set_expression_attribute_names(Some(names(&[
                ("#pk", self.hash_key()),
                ("#h", HOLDERS),
                ("#r", RVN),
            ])))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match answer {
            Ok(output) => {
                let old = Snapshot::parse(output.attributes, self.hash_key())?;
                Ok(old.live(self.now_ms(), self.skew_ms()).len())
            }
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(0)
            }
            Err(e) => Err(map_sdk(op, e)),
        }
    }
}

/// Release retries itself (see [`DynamoStore::release_key`]), not through the SDK.
fn no_sdk_retries() -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::config::Builder::default()
        .retry_config(aws_config::retry::RetryConfig::disabled())
}

/// A retried release found the lease gone: the first attempt may have ended it.
fn release_unknown(resource: &str) -> Error {
    Error::OutcomeUnknown {
        backend: BACKEND,
        operation: "release",
        resource: resource.to_owned(),
        source: "an earlier attempt may have released the lease; its answer was lost and the \
                 retry found it gone"
            .into(),
    }
}
