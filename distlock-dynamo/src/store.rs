//! [`DynamoStore`]: the lease table, one conditional write per operation.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, Region, RuntimeComponents};
use aws_sdk_dynamodb::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus, TransactWriteItem, Update,
};
use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Capabilities, Error, Grant, Holder, Info, LeaseKey, RefreshRequest,
    Refreshed, Result, Store, StoreLocker,
};
use futures_util::StreamExt;

use crate::config::{DynamoConfig, MAX_TTL};
use crate::error::{BACKEND, Op, map_sdk};
use crate::item::{
    self, ATTRS, EXPIRES, EXPIRES_AT, FENCE, HOLDERS, PERMITS, RVN, Snapshot, TTL, duration_ms,
    micros, millis, n, new_rvn, s,
};

/// Most updates DynamoDB accepts in one `TransactWriteItems`.
pub const MAX_BATCH: usize = 100;
/// Most permits one resource may have: all holders live in one item (400 KB).
pub const MAX_PERMITS: u32 = 1000;
/// Most bytes of data stored with one grant.
pub const MAX_DATA_LEN: usize = 64 * 1024;
/// Decide-and-write rounds an acquire makes when other writers keep changing
/// the item under it, before answering "held".
const MAX_ROUNDS: usize = 5;
/// Transaction rounds of a refresh batch before the leftovers are renewed one
/// by one.
const MAX_TX_ROUNDS: usize = 3;
/// Refresh transactions in flight at once.
const TX_CONCURRENCY: usize = 16;
/// The most mutex tokens remembered for [`DynamoStore::release_key`]'s put
/// (a detached lease is never released, so its entry stays): past this,
/// grants are not remembered and their release takes the update path.
const MAX_REMEMBERED: usize = 100_000;

/// A DynamoDB lease table: implements [`Store`], so
/// [`StoreLocker`]`<DynamoStore>` ([`DynamoLocker`](crate::DynamoLocker)) is a
/// full [`Locker`](distlock_core::Locker).
///
/// Cloning is cheap and shares the SDK client (its connection pool). Give each
/// simulated "process" its own store in tests ([`DynamoStore::connect`]).
///
/// Every operation is one request in the common case: a grant of a free (or,
/// for a mutex, expired) resource, a renewal, a release. A semaphore slot held
/// by an expired lease, a first grant of a semaphore, or a lost race costs a
/// second, read-free request (the failed condition returns the item). See the
/// crate docs for the layout and the clock rule.
#[derive(Clone)]
pub struct DynamoStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: DynamoConfig,
    caps: Capabilities,
    skew_ms: i64,
    requests: Arc<AtomicU64>,
    /// Lease key → token of the mutexes this store granted and has not yet
    /// released: a release that knows the token rewrites the item with one
    /// `PutItem` keeping the fence, instead of an `UpdateItem` (see
    /// [`DynamoStore::release_key`]).
    mutex_tokens: std::sync::Mutex<HashMap<LeaseKey, u64>>,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("config", &self.inner.config)
            .field("requests_sent", &self.requests_sent())
            .finish()
    }
}

/// Counts the HTTP attempts the client sends (retries included).
#[derive(Debug)]
struct CountRequests(Arc<AtomicU64>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "distlock-dynamo::CountRequests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// What an acquire wants written.
pub(crate) struct Want<'a> {
    pub(crate) resource: &'a str,
    pub(crate) key: String,
    pub(crate) ttl: Duration,
    pub(crate) permits: u32,
    pub(crate) owner: &'a str,
    pub(crate) data: &'a Bytes,
    /// User attributes to set on the item (seed 003's extra attributes).
    pub(crate) extra: Option<&'a HashMap<String, AttributeValue>>,
    /// Return the whole item after the write.
    pub(crate) want_item: bool,
}

/// The answer to an acquire.
pub(crate) enum Outcome {
    Granted {
        token: u64,
        expires_ms: i64,
        /// The item after the write, when asked for.
        item: Option<HashMap<String, AttributeValue>>,
    },
    Held {
        retry_after: Option<Duration>,
    },
}

/// The failed-condition answer of a write, or another error.
pub(crate) enum WriteError {
    /// The condition failed; the item as it was (`None`: absent or not returned).
    Condition(Option<HashMap<String, AttributeValue>>),
    Other(Error),
}

pub(crate) type WriteResult<T> = std::result::Result<T, WriteError>;

/// `#name → attribute` for exactly the placeholders an expression uses
/// (DynamoDB rejects unused ones).
fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(placeholder, name)| ((*placeholder).to_owned(), (*name).to_owned()))
        .collect()
}

/// Placeholders for the user's extra attributes: `#u0 = :u0, …`.
fn extra_sets(
    extra: Option<&HashMap<String, AttributeValue>>,
    expression: &mut String,
    names: &mut HashMap<String, String>,
    values: &mut HashMap<String, AttributeValue>,
) {
    for (i, (name, value)) in extra.into_iter().flatten().enumerate() {
        expression.push_str(&format!(", #u{i} = :u{i}"));
        names.insert(format!("#u{i}"), name.clone());
        values.insert(format!(":u{i}"), value.clone());
    }
}

impl DynamoStore {
    /// Build a client from `config` and the AWS config chain. Sends nothing:
    /// call [`DynamoStore::check_table`] or [`DynamoStore::create_table`] to
    /// find out early whether the table is there.
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) naming the bad config field,
    /// or `region` when neither the config nor the AWS chain names a region.
    pub async fn connect(config: DynamoConfig) -> Result<Self> {
        config.validate()?;
        let retry = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(config.max_attempts)
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(Duration::from_secs(2));
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout)
            .operation_attempt_timeout(config.attempt_timeout)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https_client())
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(Error::invalid(
                "region",
                "no AWS region: set it in the config (?region= in the URL) or AWS_REGION",
            ));
        }
        let client_config = aws_sdk_dynamodb::config::Builder::from(&sdk).build();
        Self::from_client_config(client_config, config)
    }

    /// Use an SDK client you configured yourself (its region, endpoint,
    /// credentials, retry and timeouts win over the config's).
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) naming the bad config field.
    pub fn from_client(client: &Client, config: DynamoConfig) -> Result<Self> {
        config.validate()?;
        Self::from_client_config(client.config().to_builder().build(), config)
    }

    fn from_client_config(
        client_config: aws_sdk_dynamodb::Config,
        config: DynamoConfig,
    ) -> Result<Self> {
        let requests = Arc::new(AtomicU64::new(0));
        let client_config = client_config
            .to_builder()
            .interceptor(CountRequests(requests.clone()))
            .build();
        let caps = Capabilities::new(BACKEND)
            .with_min_ttl(config.min_ttl())
            .with_max_ttl(MAX_TTL)
            .with_max_permits(MAX_PERMITS)
            .with_max_data_len(MAX_DATA_LEN)
            .with_batch_refresh(config.batch_refresh)
            .with_clock_margin(config.clock_skew);
        Ok(DynamoStore {
            inner: Arc::new(Inner {
                client: Client::from_conf(client_config),
                skew_ms: duration_ms(config.clock_skew),
                config,
                caps,
                requests,
                mutex_tokens: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A locker over this store, identified as `host:pid:random`.
    pub fn locker(&self) -> StoreLocker<DynamoStore> {
        StoreLocker::new(self.clone())
    }

    /// The SDK client (with this store's request counter installed).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The configuration.
    pub fn config(&self) -> &DynamoConfig {
        &self.inner.config
    }

    /// HTTP requests sent so far by this store's client, retries included
    /// (for tests and benchmarks: the heartbeat of 1,000 locks is ≤ 10 per interval).
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    fn table(&self) -> &str {
        &self.inner.config.table
    }

    fn hash_key(&self) -> &str {
        &self.inner.config.hash_key
    }

    pub(crate) fn now_ms(&self) -> i64 {
        millis(self.inner.config.clock.now())
    }

    pub(crate) fn skew_ms(&self) -> i64 {
        self.inner.skew_ms
    }

    fn op<'a>(&'a self, name: &'static str, resource: &'a str, write: bool) -> Op<'a> {
        Op {
            name,
            resource,
            write,
            table: self.table(),
        }
    }

    fn key(&self, resource: &str) -> HashMap<String, AttributeValue> {
        let mut key = HashMap::with_capacity(1);
        key.insert(self.hash_key().to_owned(), s(resource));
        key
    }

    /// Epoch seconds after which DynamoDB's TTL may delete an item written now.
    fn ttl_value(&self, now_ms: i64) -> AttributeValue {
        let retention = duration_ms(self.inner.config.retention);
        n(now_ms.saturating_add(retention) / 1000)
    }

    // ------------------------------------------------------------ table

    /// Create the table if it does not exist: string hash key, on-demand
    /// billing, and DynamoDB's TTL on `dl_ttl` so that items unused for
    /// [`DynamoConfig::retention`] are deleted. Waits until the table is active.
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

    async fn wait_active(&self) -> Result<()> {
        let op = self.op("describe table", self.table(), false);
        let mut pause = Duration::from_millis(20);
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
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        Err(Error::unavailable(
            BACKEND,
            format!("table `{}` did not become active", self.table()),
        ))
    }

    async fn enable_ttl(&self) -> Result<()> {
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
    /// named [`DynamoConfig::hash_key`].
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

    /// End every lease of `resource` now, as an operator would, without telling
    /// the holders. The item and its token counter stay. (The conformance
    /// suite's `expire`.)
    ///
    /// # Errors
    /// As any write.
    pub async fn expire(&self, resource: &str) -> Result<()> {
        let op = self.op("expire", resource, true);
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
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(map_sdk(op, e)),
        }
    }

    // ------------------------------------------------------------ reads

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

    // ------------------------------------------------------------ writes

    /// One UpdateItem; a failed condition comes back with the old item.
    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        op: Op<'_>,
        expression: String,
        condition: &str,
        names: HashMap<String, String>,
        values: HashMap<String, AttributeValue>,
        returns: ReturnValue,
        old_on_failure: bool,
    ) -> WriteResult<Option<HashMap<String, AttributeValue>>> {
        let answer = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(self.key(op.resource)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(returns)
            .set_return_values_on_condition_check_failure(
                old_on_failure.then_some(ReturnValuesOnConditionCheckFailure::AllOld),
            )
            .send()
            .await;
        match answer {
            Ok(output) => Ok(output.attributes),
            Err(error) => Err(self.write_error(op, error)),
        }
    }

    fn write_error<R>(&self, op: Op<'_>, error: SdkError<UpdateItemError, R>) -> WriteError
    where
        R: fmt::Debug + Send + Sync + 'static,
    {
        if let SdkError::ServiceError(service) = &error {
            match service.err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => {
                    return WriteError::Condition(failed.item.clone());
                }
                // A nested path under a missing map: DynamoDB may say so instead
                // of failing the condition. Treat it as "look again".
                other
                    if other.code() == Some("ValidationException")
                        && other.message().is_some_and(|m| m.contains("document path")) =>
                {
                    return WriteError::Condition(None);
                }
                _ => {}
            }
        }
        WriteError::Other(map_sdk(op, error))
    }

    /// The first, read-free attempt of an acquire. Its token is this client's
    /// clock in microseconds, written only if above `dl_fence`.
    ///
    /// - mutex: `PutItem` of the whole item, if nobody holds it (and the item
    ///   carries no user attributes, which a put would drop); an expired holder
    ///   is taken over by [`Self::decide_rounds`] from the item this returns;
    /// - semaphore: `UpdateItem` adding our entry, if there is room.
    async fn acquire_fast(&self, want: &Want<'_>, now_ms: i64, token: u64) -> WriteResult<()> {
        let op = self.op("acquire", want.resource, true);
        let expires_ms = now_ms.saturating_add(duration_ms(want.ttl));
        let entry = item::entry(token, want.owner, now_ms, expires_ms, want.data);
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

    fn put_error<R>(&self, op: Op<'_>, error: SdkError<PutItemError, R>) -> WriteError
    where
        R: fmt::Debug + Send + Sync + 'static,
    {
        if let SdkError::ServiceError(service) = &error
            && let PutItemError::ConditionalCheckFailedException(failed) = service.err()
        {
            return WriteError::Condition(failed.item.clone());
        }
        WriteError::Other(map_sdk(op, error))
    }

    /// Decide from the item as it is, and write the whole holder set back
    /// conditioned on the item not having changed (its record version, and the
    /// number of holders, which a release changes).
    async fn acquire_decided(
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
        let live: Vec<&item::Entry> = snapshot
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
            item::entry(token, want.owner, now_ms, expires_ms, want.data),
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

    fn refresh_parts(
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

    async fn refresh_single(&self, request: &RefreshRequest<'_>) -> Result<Refreshed> {
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
    async fn refresh_chunk(
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

    fn remember_token(&self, key: LeaseKey, token: u64) {
        if let Ok(mut tokens) = self.inner.mutex_tokens.lock()
            && tokens.len() < MAX_REMEMBERED
        {
            tokens.insert(key, token);
        }
    }

    fn forget_token(&self, key: LeaseKey) -> Option<u64> {
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
    async fn put_release(
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
    fn held_in(&self, old: Option<&HashMap<String, AttributeValue>>, key: &str) -> bool {
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
    async fn release_key(&self, resource: &str, lease_key: LeaseKey) -> Result<bool> {
        let op = self.op("release", resource, true);
        let key = lease_key.to_hex();
        let mut token = self.forget_token(lease_key);
        let attempts = self.inner.config.max_attempts;
        let mut pause = Duration::from_millis(50);
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
            let jittered = pause / 2 + pause.mul_f64(fastrand::f64() / 2.0);
            tokio::time::sleep(jittered).await;
            pause = (pause * 4).min(Duration::from_secs(2));
        }
    }

    /// `REMOVE dl_holders.#key` if the entry exists; the entry as it was.
    async fn remove_entry(
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
}

/// The SDK's HTTP client: hyper on rustls with `ring` (the workspace's TLS;
/// the SDK's default would build aws-lc). Certificates are verified against
/// the platform's trusted roots, as the SDK's default client does; plain
/// `http://` endpoints (emulators) work too.
fn https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
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

impl Store for DynamoStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
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
                Acquired::Granted(Grant::new(token, item::from_millis(expires_ms)))
            }
            Outcome::Held { retry_after } => Acquired::Held { retry_after },
        })
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
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

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        self.release_key(resource, key).await
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
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
                    item::from_millis(e.acquired_ms),
                    item::from_millis(e.expires_ms),
                )
            })
            .collect();
        Ok(Some(Info::new(resource, snapshot.permits, holders)))
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        let snapshot = self.snapshot(resource, "read").await?;
        let live = snapshot.live(self.now_ms(), self.skew_ms());
        Ok(live.first().map(|e| e.data.clone()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.scan_ids(prefix, true).await
    }
}
