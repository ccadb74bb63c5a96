//! [`DynamoStore`]: the lease table, one conditional write per operation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Capabilities, Error, Info, LeaseKey, RefreshRequest, Refreshed,
    Result, Store, StoreLocker,
};

use crate::config::{DynamoConfig, MAX_TTL};
use crate::error::{BACKEND, Op, map_sdk};
use crate::layout::{duration_ms, millis, n, s};

mod acquire;
mod inspect;
mod refresh;
mod release;
mod table;

/// Most updates DynamoDB accepts in one `TransactWriteItems`.
pub const MAX_BATCH: usize = 100;
/// Most permits one resource may have: all holders live in one item (400 KB).
pub const MAX_PERMITS: u32 = 1000;
/// Most bytes of data stored with one grant.
pub const MAX_DATA_LEN: usize = 64 * 1024;

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
    /// `host:port` of the endpoint, for errors.
    endpoint: String,
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
    /// User attributes to set on the item (the lease-pool API's extra attributes).
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
    /// The store over an SDK config (this store's request counter is added).
    pub(crate) fn from_client_config(
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
        let endpoint = crate::error::endpoint_of(
            config.endpoint.as_deref(),
            client_config.region().map(|r| r.as_ref()),
        );
        Ok(DynamoStore {
            inner: Arc::new(Inner {
                endpoint,
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
            endpoint: &self.inner.endpoint,
        }
    }

    /// `host:port` of the endpoint the client talks to.
    pub(crate) fn endpoint(&self) -> &str {
        &self.inner.endpoint
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
}

impl Store for DynamoStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        self.acquire_request(request).await
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        self.refresh_many(leases).await
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        self.release_key(resource, key).await
    }

    async fn evict(&self, resource: &str) -> Result<usize> {
        self.evict_all(resource).await
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        self.info_of(resource).await
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        self.data_of(resource).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.scan_ids(prefix, true).await
    }
}
