//! Refresh: one conditional update per lease, or transactions of up to
//! [`MAX_BATCH`](super::MAX_BATCH) of them.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use distlock_core::{Error, RefreshRequest, Refreshed, Result};
use futures_util::StreamExt;

use super::{DynamoStore, MAX_BATCH, WriteError, WriteResult, extra_sets, names};
use crate::error::{BACKEND, map_sdk};
use crate::layout::{ATTRS, EXPIRES, EXPIRES_AT, HOLDERS, RVN, TTL, duration_ms, n, new_rvn};

/// Transaction rounds of a refresh batch before the leftovers are renewed one
/// by one.
const MAX_TX_ROUNDS: usize = 3;
/// Refresh transactions in flight at once.
const TX_CONCURRENCY: usize = 16;

impl DynamoStore {
    /// Renew one lease: one conditional UpdateItem.
    pub(crate) async fn refresh_one(
        &self,
        resource: &str,
        key: &str,
        ttl: Duration,
        extra: Option<&HashMap<String, AttributeValue>>,
        want_item: bool,
    ) -> WriteResult<Option<HashMap<String, AttributeValue>>> {
        let now_ms = self.now_ms();
        let (mut expression, condition, mut names, mut values) =
            self.refresh_parts(key, ttl, now_ms);
        if extra.is_some() {
            names.insert("#a".to_owned(), ATTRS.to_owned());
            values.insert(":true".to_owned(), AttributeValue::Bool(true));
            expression.push_str(", #a = :true");
        }
        extra_sets(extra, &mut expression, &mut names, &mut values);
        let returns = if want_item {
            ReturnValue::AllNew
        } else {
            ReturnValue::None
        };
        let op = self.op("refresh", resource, true);
        self.update(op, expression, condition, names, values, returns, want_item)
            .await
    }

    pub(super) fn refresh_parts(
        &self,
        key: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> (
        String,
        &'static str,
        HashMap<String, String>,
        HashMap<String, AttributeValue>,
    ) {
        let expires_ms = now_ms.saturating_add(duration_ms(ttl));
        let mut names = names(&[
            ("#h", HOLDERS),
            ("#e", EXPIRES_AT),
            ("#x", EXPIRES),
            ("#r", RVN),
            ("#l", TTL),
        ]);
        names.insert("#k".to_owned(), key.to_owned());
        let mut values = HashMap::with_capacity(5);
        values.insert(":e".to_owned(), n(expires_ms));
        values.insert(":now".to_owned(), n(now_ms));
        values.insert(":rvn".to_owned(), new_rvn());
        values.insert(":ttl".to_owned(), self.ttl_value(now_ms));
        (
            "SET #h.#k.#e = :e, #x = :e, #r = :rvn, #l = :ttl".to_owned(),
            "#h.#k.#e > :now",
            names,
            values,
        )
    }

    pub(super) async fn refresh_single(&self, request: &RefreshRequest<'_>) -> Result<Refreshed> {
        match self
            .refresh_one(
                request.resource,
                &request.key.to_hex(),
                request.ttl,
                None,
                false,
            )
            .await
        {
            Ok(_) => Ok(Refreshed::Renewed),
            Err(WriteError::Condition(_)) => Ok(Refreshed::NotHeld),
            Err(WriteError::Other(error)) => Err(error),
        }
    }

    /// Renew up to [`MAX_BATCH`] leases of distinct resources in transactions:
    /// a cancelled transaction names the failed conditions (those leases are
    /// not held); the rest are retried, then renewed one by one.
    pub(super) async fn refresh_chunk(
        &self,
        leases: &[RefreshRequest<'_>],
        chunk: Vec<usize>,
    ) -> Result<Vec<(usize, Refreshed)>> {
        let mut done = Vec::with_capacity(chunk.len());
        let mut pending = chunk;
        for _ in 0..MAX_TX_ROUNDS {
            if pending.len() <= 1 {
                break;
            }
            let now_ms = self.now_ms();
            let items = pending
                .iter()
                .map(|&i| {
                    let lease = &leases[i];
                    let (expression, condition, names, values) =
                        self.refresh_parts(&lease.key.to_hex(), lease.ttl, now_ms);
                    Update::builder()
                        .table_name(self.table())
                        .set_key(Some(self.key(lease.resource)))
                        .update_expression(expression)
                        .condition_expression(condition)
                        .set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values(Some(values))
                        .build()
                        .map(|update| TransactWriteItem::builder().update(update).build())
                        .map_err(|e| Error::store(BACKEND, e))
                })
                .collect::<Result<Vec<_>>>()?;
            let label = format!("<{} leases>", pending.len());
            let op = self.op("refresh", &label, true);
            let answer = self
                .client()
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            match answer {
                Ok(_) => {
                    done.extend(pending.drain(..).map(|i| (i, Refreshed::Renewed)));
                    return Ok(done);
                }
                Err(SdkError::ServiceError(service))
                    if service.err().is_transaction_canceled_exception() =>
                {
                    let reasons = match service.err() {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e) => e.cancellation_reasons().to_vec(),
                        _ => Vec::new(),
                    };
                    if reasons.len() != pending.len() {
                        return Err(Error::store(
                            BACKEND,
                            format!(
                                "refresh: a cancelled transaction of {} updates gave {} reasons",
                                pending.len(),
                                reasons.len()
                            ),
                        ));
                    }
                    let mut retry = Vec::new();
                    for (i, reason) in pending.iter().zip(reasons) {
                        match reason.code() {
                            Some("ConditionalCheckFailed") => done.push((*i, Refreshed::NotHeld)),
                            // "None" (fine, cancelled with the rest), conflicts, throttling.
                            _ => retry.push(*i),
                        }
                    }
                    pending = retry;
                }
                Err(error) => return Err(map_sdk(op, error)),
            }
        }
        // What conflicts kept cancelling (or a lone lease): one request each.
        let singles: Vec<Result<(usize, Refreshed)>> = futures_util::stream::iter(pending)
            .map(|i| async move { self.refresh_single(&leases[i]).await.map(|r| (i, r)) })
            .buffer_unordered(TX_CONCURRENCY)
            .collect()
            .await;
        for single in singles {
            done.push(single?);
        }
        Ok(done)
    }

    /// [`Store::refresh`](distlock_core::Store::refresh): one lease alone, or
    /// transactions of up to [`MAX_BATCH`] leases on distinct items.
    pub(super) async fn refresh_many(
        &self,
        leases: &[RefreshRequest<'_>],
    ) -> Result<Vec<Refreshed>> {
        if let [lease] = leases {
            return Ok(vec![self.refresh_single(lease).await?]);
        }
        if !self.inner.config.batch_refresh {
            let singles: Vec<Result<Refreshed>> = futures_util::stream::iter(0..leases.len())
                .map(|i| self.refresh_single(&leases[i]))
                .buffered(TX_CONCURRENCY)
                .collect()
                .await;
            return singles.into_iter().collect();
        }
        // Chunks of at most MAX_BATCH leases on distinct items (a transaction
        // may touch an item once).
        let mut chunks: Vec<(Vec<usize>, HashSet<&str>)> = Vec::new();
        for (i, lease) in leases.iter().enumerate() {
            let slot = chunks.iter_mut().find(|(members, resources)| {
                members.len() < MAX_BATCH && !resources.contains(lease.resource)
            });
            match slot {
                Some((members, resources)) => {
                    members.push(i);
                    resources.insert(lease.resource);
                }
                None => chunks.push((vec![i], HashSet::from([lease.resource]))),
            }
        }
        let chunks: Vec<Vec<usize>> = chunks.into_iter().map(|(members, _)| members).collect();
        let answers: Vec<Result<Vec<(usize, Refreshed)>>> = futures_util::stream::iter(chunks)
            .map(|members| self.refresh_chunk(leases, members))
            .buffer_unordered(TX_CONCURRENCY)
            .collect()
            .await;
        let mut outcomes = vec![Refreshed::NotHeld; leases.len()];
        let mut seen = 0;
        for answer in answers {
            for (i, outcome) in answer? {
                outcomes[i] = outcome;
                seen += 1;
            }
        }
        if seen != leases.len() {
            return Err(Error::store(
                BACKEND,
                format!("refresh answered {seen} of {} leases", leases.len()),
            ));
        }
        Ok(outcomes)
    }
}
