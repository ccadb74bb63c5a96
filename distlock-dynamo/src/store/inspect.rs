//! Reads: info, read and list (a consistent `GetItem`, a paginated `Scan`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use distlock_core::{Holder, Info, Result};

use super::{DynamoStore, names};
use crate::error::map_sdk;
use crate::layout::{self, HOLDERS, Snapshot, s};

impl DynamoStore {
    /// The whole item, consistently read.
    pub(crate) async fn snapshot(&self, resource: &str, name: &'static str) -> Result<Snapshot> {
        let op = self.op(name, resource, false);
        let answer = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(self.key(resource)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk(op, e))?;
        Snapshot::parse(answer.item, self.hash_key())
    }

    /// Every item's id (held or not) starting with `prefix`, sorted: a
    /// paginated, consistent `Scan` that projects only the hash key.
    pub(crate) async fn scan_ids(&self, prefix: &str, held_only: bool) -> Result<Vec<String>> {
        let op = self.op("list", prefix, false);
        let mut filters = Vec::new();
        let mut values = HashMap::new();
        let mut pairs = vec![("#pk", self.hash_key())];
        if !prefix.is_empty() {
            filters.push("begins_with(#pk, :prefix)");
            values.insert(":prefix".to_owned(), s(prefix));
        }
        if held_only {
            // Free items (a put release leaves none) and emptied holder maps
            // are skipped; what is left is checked for live holders below.
            filters.push("attribute_exists(#h)");
            pairs.push(("#h", HOLDERS));
        }
        let projection = if held_only { "#pk, #h" } else { "#pk" };
        let now_ms = self.now_ms();
        let mut ids = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client()
                .scan()
                .table_name(self.table())
                .consistent_read(true)
                .limit(i32::try_from(self.inner.config.scan_page_size).unwrap_or(i32::MAX))
                .projection_expression(projection)
                .set_filter_expression((!filters.is_empty()).then(|| filters.join(" AND ")))
                .set_expression_attribute_names(Some(names(&pairs)))
                .set_expression_attribute_values((!values.is_empty()).then(|| values.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| map_sdk(op, e))?;
            for item in page.items.unwrap_or_default() {
                let Some(AttributeValue::S(id)) = item.get(self.hash_key()).cloned() else {
                    continue;
                };
                if held_only {
                    let snapshot = Snapshot::parse(Some(item), self.hash_key())?;
                    if snapshot.live(now_ms, self.skew_ms()).is_empty() {
                        continue;
                    }
                }
                ids.push(id);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The live holders of `resource`, by one consistent read.
    pub(super) async fn info_of(&self, resource: &str) -> Result<Option<Info>> {
        let snapshot = self.snapshot(resource, "info").await?;
        let live = snapshot.live(self.now_ms(), self.skew_ms());
        if live.is_empty() {
            return Ok(None);
        }
        let holders = live
            .iter()
            .map(|e| {
                Holder::new(
                    e.owner.clone(),
                    e.token,
                    layout::from_millis(e.acquired_ms),
                    layout::from_millis(e.expires_ms),
                )
            })
            .collect();
        Ok(Some(Info::new(resource, snapshot.permits, holders)))
    }

    /// The data of the oldest live holder of `resource`.
    pub(super) async fn data_of(&self, resource: &str) -> Result<Option<Bytes>> {
        let snapshot = self.snapshot(resource, "read").await?;
        let live = snapshot.live(self.now_ms(), self.skew_ms());
        Ok(live.first().map(|e| e.data.clone()))
    }
}
