//! The Redis key layout.
//!
//! Every key that belongs to an account carries the account id as a hash tag
//! (`{acct_1}`), so one account's keys live in one Redis Cluster slot and a
//! script may touch several of them. Account ids cannot contain braces
//! ([`crate::message::AccountId`] refuses them), so the tag is always exact.

use crate::message::{AccountId, MessageId, Priority};
use sha2::{Digest, Sha256};

/// Prefix of every key this service writes, so it can share a Redis.
pub const PREFIX: &str = "of";

fn tagged(account: &AccountId, rest: &str) -> String {
    format!("{PREFIX}:{{{account}}}:{rest}")
}

/// The account's token bucket (hash `tokens`, `ts`).
pub fn bucket(account: &AccountId) -> String {
    tagged(account, "bucket")
}

/// The next free deferral slot of one priority class.
pub fn horizon(account: &AccountId, priority: Priority) -> String {
    tagged(account, &format!("horizon:{}", priority.as_str()))
}

/// Set while the upstream asked the account to wait (429 `Retry-After`).
pub fn pause(account: &AccountId) -> String {
    tagged(account, "pause")
}

/// The account's own limit (hash `perMinute`, `burst`), read by the limiter
/// script in the same call as the bucket; absent: the defaults.
pub fn limits(account: &AccountId) -> String {
    tagged(account, "limits")
}

/// A message's status record (hash).
pub fn status(account: &AccountId, id: &MessageId) -> String {
    tagged(account, &format!("msg:{id}"))
}

/// A send claim: held while one consumer calls the upstream for a message.
pub fn claim(account: &AccountId, id: &MessageId) -> String {
    tagged(account, &format!("claim:{id}"))
}

/// A campaign's record (hash: content, priority, sendAt, createdAt, state,
/// total, and the first answer of its creating request).
pub fn campaign(account: &AccountId, id: &str) -> String {
    tagged(account, &format!("camp:{id}"))
}

/// A campaign's recipients (hash recipient id -> message id): `HSETNX` on it
/// is what makes one message per recipient.
pub fn campaign_recipients(account: &AccountId, id: &str) -> String {
    tagged(account, &format!("camp:{id}:rcpt"))
}

/// A campaign's message ids in the order they were created (list): the
/// stable order of its pages (the cursor is an index into it).
pub fn campaign_messages(account: &AccountId, id: &str) -> String {
    tagged(account, &format!("camp:{id}:msgs"))
}

/// A campaign's messages stored but not yet confirmed on the queue (set):
/// a retry of the request enqueues them again.
pub fn campaign_pending(account: &AccountId, id: &str) -> String {
    tagged(account, &format!("camp:{id}:pending"))
}

/// The account's campaign counters (hash `<campaignId>:<status>` -> count),
/// one key per account so the status scripts can name it without knowing
/// the campaign: the script reads `campaignId` from the status record and
/// moves the count in the same call as the status.
pub fn campaign_counts(account: &AccountId) -> String {
    tagged(account, "campcounts")
}

/// An `Idempotency-Key`, hashed so any client string makes a safe key.
pub fn idempotency(account: &AccountId, key: &str) -> String {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    tagged(account, &format!("idem:{digest}"))
}

/// The producer's fallback outbox (a stream) for one queue, used while SQS is
/// unavailable. Named after the queue, so stacks that share a Redis (local
/// dev and test, staging and production on one cluster) never replay each
/// other's messages onto the wrong queue.
pub fn outbox(queue_url: &str) -> String {
    let name = queue_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    format!("{PREFIX}:outbox:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outboxes_are_per_queue() {
        assert_eq!(
            outbox("https://sqs.us-east-1.amazonaws.com/123456789012/outbound-messages-production"),
            "of:outbox:outbound-messages-production"
        );
        assert_ne!(
            outbox("http://127.0.0.1:4566/123456789012/a"),
            outbox("http://127.0.0.1:4566/123456789012/b")
        );
    }

    #[test]
    fn all_account_keys_share_one_hash_tag() {
        let a = AccountId::parse("acct_1").unwrap();
        let id = MessageId::new();
        for k in [
            bucket(&a),
            horizon(&a, Priority::Low),
            pause(&a),
            limits(&a),
            status(&a, &id),
            claim(&a, &id),
            idempotency(&a, "any {weird} key"),
            campaign(&a, "c1"),
            campaign_recipients(&a, "c1"),
            campaign_messages(&a, "c1"),
            campaign_pending(&a, "c1"),
            campaign_counts(&a),
        ] {
            let open = k.find('{').unwrap();
            let close = k[open..].find('}').unwrap() + open;
            assert_eq!(&k[open + 1..close], "acct_1", "{k}");
        }
    }
}
