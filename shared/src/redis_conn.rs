//! The one Redis connection type the library uses: one Redis (a primary,
//! ElastiCache's cluster mode disabled) or a Redis Cluster (ElastiCache's
//! cluster mode enabled, several shards), chosen by `REDIS_CLUSTER`.
//!
//! [`RedisConn`] implements [`redis::aio::ConnectionLike`], so scripts
//! (`Script::invoke_async`), pipelines and commands run on either unchanged;
//! it is cheap to clone (both variants are handles to one multiplexed
//! connection per node) and reconnects by itself.
//!
//! # What cluster mode asks of the callers
//! - Every script's and every pipeline's keys in one slot: every key of an
//!   account carries the account as a hash tag ([`crate::keys`]); the unit
//!   test `every_script_keeps_its_keys_in_one_slot` holds each call to it.
//!   redis-rs routes a pipeline to the node of its first keyed command (a
//!   keyless `TIME` in it goes there too) and a script to its first key.
//! - `WAIT` ([`crate::durability`]) has no key: redis-rs would send it to
//!   every primary (and answer the smallest count), so a shard without a
//!   replica would hold up every account, and a stale slot map that still
//!   names a demoted primary fails every `WAIT` (found by the cluster fault
//!   case). [`RedisConn::wait_for_replicas`] sends it to the primary of the
//!   key just written instead.
//! - A Redis Cluster has one database: the URL names none (or `/0`); the
//!   configuration refuses another ([`crate::config`]).
//!
//! The URL is the cluster's configuration endpoint (ElastiCache's
//! `ConfigurationEndPoint`, locally any one node): the client asks it for
//! the slot map and connects to every primary itself, follows `MOVED` and
//! `ASK`, and refreshes the map after a failover. TLS (`rediss://`) and the
//! AUTH password in the URL apply to every node it connects to.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

/// Which kind of Redis `REDIS_URL` points at (`REDIS_CLUSTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Topology {
    /// One primary (with or without replicas): redis-rs `ConnectionManager`.
    #[default]
    Single,
    /// A Redis Cluster: redis-rs' cluster client, from its configuration endpoint.
    Cluster,
}

/// A connection to one Redis or to a Redis Cluster. Built once at cold
/// start; clone it freely.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    // No URL (it may hold the password): only the kind.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConn::Single(_) => "RedisConn::Single",
            RedisConn::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

/// Connect and response timeouts of one node, as the single-node manager
/// has had since the first release.
const TIMEOUT: Duration = Duration::from_secs(2);
/// A cluster request with its retries, redirections (`MOVED`/`ASK`) and
/// reconnections may take this long in all; above one node's timeout so a
/// failover's redirections fit, under the consumer's in-process waits.
const CLUSTER_OVERALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of a cluster request (connection lost, `TRYAGAIN`, `CLUSTERDOWN`
/// while a replica is promoted), 50 ms to 1 s apart.
const CLUSTER_RETRIES: u32 = 6;

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(2)
}

fn cluster_client(url: &str) -> RedisResult<ClusterClient> {
    ClusterClient::builder([url])
        .connection_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .overall_response_timeout(Some(CLUSTER_OVERALL_TIMEOUT))
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(50)
        .max_retry_wait(1000)
        .build()
}

fn cluster_config() -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(TIMEOUT)
        .set_response_timeout(TIMEOUT)
}

/// Connects now: an unreachable Redis is an error here.
pub async fn connect(url: &str, topology: Topology) -> RedisResult<RedisConn> {
    match topology {
        Topology::Single => {
            let client = redis::Client::open(url)?;
            Ok(RedisConn::Single(
                ConnectionManager::new_with_config(client, manager_config()).await?,
            ))
        }
        Topology::Cluster => Ok(RedisConn::Cluster(
            cluster_client(url)?
                .get_async_connection_with_config(cluster_config())
                .await?,
        )),
    }
}

/// Connects on first use: a function whose Redis is down at cold start
/// still starts, and answers 503 (and `/health` names Redis) until Redis is
/// back. Only a malformed URL is an error here.
pub fn connect_lazy(url: &str, topology: Topology) -> RedisResult<RedisConn> {
    match topology {
        Topology::Single => {
            let client = redis::Client::open(url)?;
            Ok(RedisConn::Single(ConnectionManager::new_lazy_with_config(
                client,
                manager_config(),
            )?))
        }
        Topology::Cluster => Ok(RedisConn::Cluster(
            cluster_client(url)?.get_pending_async_connection_with_config(cluster_config()),
        )),
    }
}

impl RedisConn {
    pub fn topology(&self) -> Topology {
        match self {
            RedisConn::Single(_) => Topology::Single,
            RedisConn::Cluster(_) => Topology::Cluster,
        }
    }

    /// `WAIT replicas timeout_ms` on the node that took the write to `key`:
    /// how many of its replicas acknowledged every write this client made on
    /// its connection to that node ([`crate::durability`]).
    ///
    /// In a cluster it goes to the primary of `key`'s slot, not to every
    /// primary (redis-rs' default for a keyless `WAIT`): a shard failing
    /// over then holds up only its own accounts, and a slot map that still
    /// names a primary that has since become a replica (it answers `WAIT`
    /// with an error, and no `MOVED` would ever correct the map) cannot
    /// fail every confirmed write of every shard. The write just before was
    /// routed by the same slot (after any `MOVED`, with the refreshed map).
    pub async fn wait_for_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout_ms: u64,
    ) -> RedisResult<i64> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout_ms);
        match self {
            RedisConn::Single(c) => wait.query_async(c).await,
            RedisConn::Cluster(c) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::new(key_slot(key), SlotAddr::Master);
                let reply = c
                    .route_command(
                        wait,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(redis::FromRedisValue::from_redis_value(reply)?)
            }
        }
    }
}

impl From<ConnectionManager> for RedisConn {
    fn from(c: ConnectionManager) -> Self {
        RedisConn::Single(c)
    }
}

impl From<ClusterConnection> for RedisConn {
    fn from(c: ClusterConnection) -> Self {
        RedisConn::Cluster(c)
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// The Redis Cluster slot of `key` (CRC16 of its hash tag, or of the whole
/// key without one), as the server's `CLUSTER KEYSLOT` computes it.
pub fn key_slot(key: &str) -> u16 {
    let k = key.as_bytes();
    let tagged = k.iter().position(|&b| b == b'{').and_then(|open| {
        let close = k[open + 1..].iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &k[open + 1..open + 1 + close])
    });
    crc16_xmodem(tagged.unwrap_or(k)) % 16_384
}

/// CRC-16/XMODEM (polynomial 0x1021, initial 0), Redis Cluster's key hash.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_servers() {
        // Values from `redis-cli CLUSTER KEYSLOT` (Redis 7.0.15).
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("of:{acct_1}:bucket"), key_slot("acct_1"));
        // The client's own routing agrees (it has no public slot number).
        for k in ["foo", "of:{acct_1}:msg:1", "{}", "a{b}c{d}", "{{x}}"] {
            assert_eq!(
                redis::cluster_routing::Slot::for_key(k),
                redis::cluster_routing::Slot::new(key_slot(k)).unwrap(),
                "{k}"
            );
        }
    }

    #[test]
    fn a_malformed_url_is_refused_by_both_kinds() {
        for t in [Topology::Single, Topology::Cluster] {
            assert!(connect_lazy("http://x", t).is_err(), "{t:?}");
        }
    }

    #[tokio::test]
    async fn a_lazy_connection_to_nothing_is_built_and_its_first_command_fails() {
        for t in [Topology::Single, Topology::Cluster] {
            let mut c = connect_lazy("redis://127.0.0.1:1", t).unwrap();
            assert_eq!(c.topology(), t);
            let r: RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
            assert!(r.is_err(), "{t:?}");
        }
    }
}
