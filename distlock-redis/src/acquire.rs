//! Acquire: one script; and the quorum's token raise.

use distlock_core::{AcquireRequest, LeaseKey, Result};

use crate::RedisStore;
use crate::client::ms;
use crate::error::unexpected;
use crate::layout::Keys;
use crate::scripts::SCRIPTS;

/// The answer of the acquire script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawAcquired {
    Granted { token: u64, expires_ms: i64 },
    Held { retry_after_ms: i64 },
    Mismatch { existing: u32 },
}

impl RedisStore {
    pub(crate) async fn acquire_raw(&self, request: &AcquireRequest<'_>) -> Result<RawAcquired> {
        let keys = Keys::new(self.namespace(), request.resource);
        let key = request.key.to_hex();
        let mut owner_and_data = Vec::with_capacity(8 + request.owner.len() + request.data.len());
        owner_and_data.extend_from_slice(request.owner.len().to_string().as_bytes());
        owner_and_data.push(b':');
        owner_and_data.extend_from_slice(request.owner.as_bytes());
        owner_and_data.extend_from_slice(request.data);
        let reply: Vec<i64> = self
            .run(
                &SCRIPTS.acquire,
                crate::scripts::ACQUIRE,
                &[&keys.holders, &keys.details, &keys.token],
                |cmd| {
                    cmd.arg(&key)
                        .arg(ms(request.ttl))
                        .arg(request.permits)
                        .arg(owner_and_data.as_slice());
                },
            )
            .await
            .map_err(|e| self.map_error(e, "acquire", request.resource, true))?;
        match reply[..] {
            [1, token, expires_ms] if token > 0 => Ok(RawAcquired::Granted {
                token: token as u64,
                expires_ms,
            }),
            [0, retry_after_ms] => Ok(RawAcquired::Held { retry_after_ms }),
            [-1, existing] => Ok(RawAcquired::Mismatch {
                existing: u32::try_from(existing).unwrap_or(0),
            }),
            _ => Err(unexpected("acquire", &reply)),
        }
    }

    /// Quorum mode: raise the token counter to `token` if `key` still holds.
    pub(crate) async fn raise_raw(
        &self,
        resource: &str,
        key: LeaseKey,
        token: u64,
    ) -> Result<bool> {
        let keys = Keys::new(self.namespace(), resource);
        let hex = key.to_hex();
        let raised: i64 = self
            .run(
                &SCRIPTS.raise,
                crate::scripts::RAISE,
                &[&keys.holders, &keys.details, &keys.token],
                |cmd| {
                    cmd.arg(&hex).arg(token);
                },
            )
            .await
            .map_err(|e| self.map_error(e, "acquire", resource, true))?;
        Ok(raised == 1)
    }
}
