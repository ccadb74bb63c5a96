//! Acquire: one conditional write, a second one decided from the returned item.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use distlock_core::{AcquireRequest, Acquired, Error, Grant, Result};

use super::{DynamoStore, Outcome, Want, WriteError, WriteResult, extra_sets, names};
use crate::layout::{
    self, ATTRS, EXPIRES, FENCE, HOLDERS, PERMITS, RVN, Snapshot, TTL, duration_ms, micros, n,
    new_rvn, s,
};

/// Decide-and-write rounds an acquire makes when other writers keep changing
/// the item under it, before answering "held".
const MAX_ROUNDS: usize = 5;

impl DynamoStore {
    /// The first, read-free attempt of an acquire. Its token is this client's
    /// clock in microseconds, written only if above `dl_fence`.
    ///
    /// - mutex: `PutItem` of the whole item, if nobody holds it (and the item
    ///   carries no user attributes, which a put would drop); an expired holder
    ///   is taken over by [`Self::decide_rounds`] from the item this returns;
    /// - semaphore: `UpdateItem` adding our entry, if there is room.
    pub(super) async fn acquire_fast(
        &self,
        want: &Want<'_>,
        now_ms: i64,
        token: u64,
    ) -> WriteResult<()> {
        let op = self.op("acquire", want.resource, true);
        let expires_ms = now_ms.saturating_add(duration_ms(want.ttl));
        let entry = layout::entry(token, want.owner, now_ms, expires_ms, want.data);
        let mut values = HashMap::with_capacity(6);
        values.insert(":tok".to_owned(), n(token));
        if want.permits == 1 {
            let mut holders = HashMap::with_capacity(1);
            holders.insert(want.key.clone(), entry);
            let mut record = HashMap::with_capacity(8);
            record.insert(self.hash_key().to_owned(), s(want.resource));
            record.insert(HOLDERS.to_owned(), AttributeValue::M(holders));
            record.insert(FENCE.to_owned(), n(token));
            record.insert(PERMITS.to_owned(), n(1));
            record.insert(EXPIRES.to_owned(), n(expires_ms));
            record.insert(RVN.to_owned(), new_rvn());
            record.insert(TTL.to_owned(), self.ttl_value(now_ms));
            let answer = self
                .client()
                .put_item()
                .table_name(self.table())
                .set_item(Some(record))
                // Only a free item (as a put release or a first use leaves it):
                // an expired holder, an emptied holder map or user attributes
                // fail here and are decided from the returned item (one more
                // write, no read). Every term costs an emulator real time.
                .condition_expression(
                    "attribute_not_exists(#h) AND (attribute_not_exists(#f) OR #f < :tok) \
                     AND attribute_not_exists(#a)",
                )
                .set_expression_attribute_names(Some(names(&[
                    ("#h", HOLDERS),
                    ("#f", FENCE),
                    ("#a", ATTRS),
                ])))
                .set_expression_attribute_values(Some(values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            return match answer {
                Ok(_) => Ok(()),
                Err(error) => Err(self.put_error(op, error)),
            };
        }
        let mut names = names(&[
            ("#h", HOLDERS),
            ("#f", FENCE),
            ("#p", PERMITS),
            ("#x", EXPIRES),
            ("#r", RVN),
            ("#l", TTL),
        ]);
        names.insert("#k".to_owned(), want.key.clone());
        values.insert(":zero".to_owned(), n(0));
        values.insert(":entry".to_owned(), entry);
        values.insert(":p".to_owned(), n(want.permits));
        values.insert(":e".to_owned(), n(expires_ms));
        values.insert(":rvn".to_owned(), new_rvn());
        values.insert(":ttl".to_owned(), self.ttl_value(now_ms));
        self.update(
            op,
            "SET #h.#k = :entry, #f = :tok, #p = :p, #x = :e, #r = :rvn, #l = :ttl".to_owned(),
            "attribute_exists(#h) AND (size(#h) = :zero OR (#p = :p AND size(#h) < :p)) \
             AND #f < :tok",
            names,
            values,
            ReturnValue::None,
            true,
        )
        .await
        .map(|_| ())
    }

    /// Decide from the item as it is, and write the whole holder set back
    /// conditioned on the item not having changed (its record version, and the
    /// number of holders, which a release changes).
    pub(super) async fn acquire_decided(
        &self,
        want: &Want<'_>,
        snapshot: &Snapshot,
        now_ms: i64,
    ) -> Result<std::result::Result<Outcome, Option<HashMap<String, AttributeValue>>>> {
        // Our own key already holds it: an answer lost and retried.
        if let Some(mine) = snapshot.holder(&want.key)
            && mine.expires_ms > now_ms
        {
            return Ok(Ok(Outcome::Granted {
                token: mine.token,
                expires_ms: mine.expires_ms,
                item: None,
            }));
        }
        let live: Vec<&layout::Entry> = snapshot
            .live(now_ms, self.skew_ms())
            .into_iter()
            .filter(|e| e.key != want.key)
            .collect();
        if !live.is_empty() && snapshot.permits != want.permits {
            return Err(Error::SizeMismatch {
                resource: want.resource.to_owned(),
                requested: want.permits,
                existing: snapshot.permits,
            });
        }
        if live.len() >= want.permits as usize {
            let soonest = live
                .iter()
                .map(|e| e.expires_ms.saturating_add(self.skew_ms()))
                .min()
                .unwrap_or(now_ms);
            let wait = u64::try_from(soonest.saturating_sub(now_ms)).unwrap_or(0);
            return Ok(Ok(Outcome::Held {
                retry_after: Some(Duration::from_millis(wait)),
            }));
        }
        let token = micros(self.inner.config.clock.now())
            .max(snapshot.fence.unwrap_or(0).saturating_add(1));
        let expires_ms = now_ms.saturating_add(duration_ms(want.ttl));
        let mut holders = HashMap::with_capacity(live.len() + 1);
        for entry in &live {
            holders.insert(entry.key.clone(), entry.value());
        }
        holders.insert(
            want.key.clone(),
            layout::entry(token, want.owner, now_ms, expires_ms, want.data),
        );
        let mut values = HashMap::with_capacity(10);
        values.insert(":m".to_owned(), AttributeValue::M(holders));
        values.insert(":tok".to_owned(), n(token));
        values.insert(":p".to_owned(), n(want.permits));
        values.insert(":e".to_owned(), n(expires_ms));
        values.insert(":rvn".to_owned(), new_rvn());
        values.insert(":ttl".to_owned(), self.ttl_value(now_ms));
        let mut pairs = vec![
            ("#h", HOLDERS),
            ("#f", FENCE),
            ("#p", PERMITS),
            ("#x", EXPIRES),
            ("#r", RVN),
            ("#l", TTL),
        ];
        let condition = if snapshot.exists {
            let version = match &snapshot.rvn {
                Some(rvn) => {
                    values.insert(":old".to_owned(), s(rvn.clone()));
                    "#r = :old"
                }
                None => "attribute_not_exists(#r)",
            };
            let holders = if snapshot.has_holders {
                values.insert(":n".to_owned(), n(snapshot.holders.len()));
                "size(#h) = :n"
            } else {
                "attribute_not_exists(#h)"
            };
            pairs.push(("#pk", self.hash_key()));
            format!("attribute_exists(#pk) AND {version} AND {holders}")
        } else {
            pairs.push(("#pk", self.hash_key()));
            "attribute_not_exists(#pk)".to_owned()
        };
        let mut names = names(&pairs);
        let mut expression =
            "SET #h = :m, #f = :tok, #p = :p, #x = :e, #r = :rvn, #l = :ttl".to_owned();
        if want.extra.is_some() {
            names.insert("#a".to_owned(), ATTRS.to_owned());
            values.insert(":true".to_owned(), AttributeValue::Bool(true));
            expression.push_str(", #a = :true");
        }
        extra_sets(want.extra, &mut expression, &mut names, &mut values);
        let returns = if want.want_item {
            ReturnValue::AllNew
        } else {
            ReturnValue::None
        };
        let op = self.op("acquire", want.resource, true);
        match self
            .update(op, expression, &condition, names, values, returns, true)
            .await
        {
            Ok(item) => Ok(Ok(Outcome::Granted {
                token,
                expires_ms,
                item,
            })),
            Err(WriteError::Condition(old)) => Ok(Err(old)),
            Err(WriteError::Other(error)) => Err(error),
        }
    }

    /// Acquire: the read-free attempt, then (if its condition failed) decide
    /// from the item it returned, a few rounds at most.
    pub(crate) async fn acquire_want(&self, want: &Want<'_>) -> Result<Outcome> {
        let now_ms = self.now_ms();
        let token = micros(self.inner.config.clock.now());
        let first = match self.acquire_fast(want, now_ms, token).await {
            Ok(()) => {
                return Ok(Outcome::Granted {
                    token,
                    expires_ms: now_ms.saturating_add(duration_ms(want.ttl)),
                    item: None,
                });
            }
            Err(WriteError::Condition(old)) => old,
            Err(WriteError::Other(error)) => return Err(error),
        };
        self.decide_rounds(want, first).await
    }

    /// Rounds of decide-and-write from a failed condition's answer.
    pub(crate) async fn decide_rounds(
        &self,
        want: &Want<'_>,
        mut old: Option<HashMap<String, AttributeValue>>,
    ) -> Result<Outcome> {
        for _ in 0..MAX_ROUNDS {
            let snapshot = match old.take() {
                Some(item) => Snapshot::parse(Some(item), self.hash_key())?,
                // Absent, or the failure did not say: read it.
                None => self.snapshot(want.resource, "acquire").await?,
            };
            let now_ms = self.now_ms();
            match self.acquire_decided(want, &snapshot, now_ms).await? {
                Ok(outcome) => return Ok(outcome),
                Err(changed) => old = changed,
            }
        }
        // Others keep changing the item: report it as held, briefly.
        Ok(Outcome::Held {
            retry_after: Some(Duration::from_millis(10)),
        })
    }

    /// [`Store::acquire`](distlock_core::Store::acquire).
    pub(super) async fn acquire_request(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        let want = Want {
            resource: request.resource,
            key: request.key.to_hex(),
            ttl: request.ttl,
            permits: request.permits,
            owner: request.owner,
            data: request.data,
            extra: None,
            want_item: false,
        };
        Ok(match self.acquire_want(&want).await? {
            Outcome::Granted {
                token, expires_ms, ..
            } => {
                if request.permits == 1 {
                    self.remember_token(request.key, token);
                }
                Acquired::Granted(Grant::new(token, layout::from_millis(expires_ms)))
            }
            Outcome::Held { retry_after } => Acquired::Held { retry_after },
        })
    }
}
