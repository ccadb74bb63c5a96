//! The lease table itself: creating it, checking its key, DynamoDB's TTL.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use distlock_core::{Backoff, Error, Result};

use super::DynamoStore;
use crate::error::{BACKEND, map_sdk};
use crate::layout::TTL;

impl DynamoStore {
    /// Create the table if it does not exist: string hash key, on-demand
    /// billing, and DynamoDB's TTL on `dl_ttl` so that items unused for
    /// [`DynamoConfig::retention`](crate::DynamoConfig::retention) are deleted. Waits until the table is active.
    /// Idempotent. Returns whether this call created the table.
    ///
    /// # Errors
    /// As [`DynamoStore::check_table`]; also the SDK's error for a refused creation.
    pub async fn create_table(&self) -> Result<bool> {
        let op = self.op("create table", self.table(), true);
        let created = self
            .client()
            .create_table()
            .table_name(self.table())
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(self.hash_key())
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| Error::store(BACKEND, e))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(self.hash_key())
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| Error::store(BACKEND, e))?,
            )
            .send()
            .await;
        let created = match created {
            Ok(_) => true,
            Err(SdkError::ServiceError(e)) if e.err().is_resource_in_use_exception() => false,
            Err(e) => return Err(map_sdk(op, e)),
        };
        self.wait_active().await?;
        self.check_table().await?;
        self.enable_ttl().await?;
        Ok(created)
    }

    pub(super) async fn wait_active(&self) -> Result<()> {
        let op = self.op("describe table", self.table(), false);
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));
        for _ in 0..60 {
            let described = self
                .client()
                .describe_table()
                .table_name(self.table())
                .send()
                .await
                .map_err(|e| map_sdk(op, e))?;
            let status = described.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(backoff.next_pause()).await;
        }
        Err(Error::unavailable(
            BACKEND,
            format!("table `{}` did not become active", self.table()),
        ))
    }

    pub(super) async fn enable_ttl(&self) -> Result<()> {
        let op = self.op("time to live", self.table(), true);
        let current = self
            .client()
            .describe_time_to_live()
            .table_name(self.table())
            .send()
            .await
            .map_err(|e| map_sdk(op, e))?;
        let description = current.time_to_live_description();
        let status = description.and_then(|d| d.time_to_live_status());
        let attribute = description.and_then(|d| d.attribute_name());
        if matches!(
            status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) {
            if attribute != Some(TTL) {
                tracing::warn!(
                    table = self.table(),
                    attribute,
                    "the table's TTL uses another attribute; dead lease items are not cleaned up"
                );
            }
            return Ok(());
        }
        self.client()
            .update_time_to_live()
            .table_name(self.table())
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL)
                    .build()
                    .map_err(|e| Error::store(BACKEND, e))?,
            )
            .send()
            .await
            .map_err(|e| map_sdk(op, e))?;
        Ok(())
    }

    /// Check that the table exists with the expected key: one string hash key
    /// named [`DynamoConfig::hash_key`](crate::DynamoConfig::hash_key).
    ///
    /// # Errors
    /// [`Store`](Error::Store) naming what is wrong (missing table, other key);
    /// [`Unavailable`](Error::Unavailable) if DynamoDB cannot be reached.
    pub async fn check_table(&self) -> Result<()> {
        let op = self.op("describe table", self.table(), false);
        let described = self
            .client()
            .describe_table()
            .table_name(self.table())
            .send()
            .await
            .map_err(|e| map_sdk(op, e))?;
        let table = described.table();
        let schema = table.map(|t| t.key_schema()).unwrap_or_default();
        let hash_ok = schema.len() == 1
            && schema[0].attribute_name() == self.hash_key()
            && schema[0].key_type() == &KeyType::Hash;
        let type_ok = table
            .map(|t| t.attribute_definitions())
            .unwrap_or_default()
            .iter()
            .any(|d| {
                d.attribute_name() == self.hash_key()
                    && d.attribute_type() == &ScalarAttributeType::S
            });
        if !(hash_ok && type_ok) {
            return Err(Error::store(
                BACKEND,
                format!(
                    "table `{}` must have exactly one key, a string (S) hash key named `{}`; \
                     it has {:?} (set the hash key name with DynamoConfig::with_hash_key or \
                     ?hash_key=)",
                    self.table(),
                    self.hash_key(),
                    schema
                        .iter()
                        .map(|k| format!("{} {}", k.attribute_name(), k.key_type()))
                        .collect::<Vec<_>>()
                ),
            ));
        }
        Ok(())
    }
}
