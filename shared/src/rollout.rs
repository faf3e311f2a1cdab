//! The intake feature flag and its percentage rollout.
//!
//! `RATE_LIMITER_ROLLOUT_PERCENT` opens intake for a stable share of
//! accounts: an account's bucket (0–99) is a hash of its id, so raising the
//! percentage only ever adds accounts, and every instance agrees.

use crate::message::AccountId;
use sha2::{Digest, Sha256};

/// The account's rollout bucket, 0 to 99 (SHA-256 based: stable across
/// releases and platforms, unlike `std`'s `DefaultHasher`).
pub fn bucket(account: &AccountId) -> u8 {
    let d = Sha256::digest(account.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(first) % 100) as u8
}

/// Whether intake is open for `account`.
pub fn admits(enabled: bool, percent: u8, account: &AccountId) -> bool {
    enabled && bucket(account) < percent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(i: usize) -> AccountId {
        AccountId::parse(&format!("acct_{i}")).unwrap()
    }

    #[test]
    fn zero_and_hundred_percent_are_absolute() {
        for i in 0..200 {
            assert!(admits(true, 100, &acct(i)));
            assert!(!admits(true, 0, &acct(i)));
            assert!(!admits(false, 100, &acct(i)));
        }
    }

    #[test]
    fn raising_the_percentage_only_adds_accounts() {
        for i in 0..500 {
            let a = acct(i);
            let first = (0..=100).find(|p| admits(true, *p, &a)).unwrap();
            assert!((first..=100).all(|p| admits(true, p, &a)));
        }
    }

    #[test]
    fn the_share_is_close_to_the_percentage() {
        let n = 10_000;
        let admitted = (0..n).filter(|i| admits(true, 10, &acct(*i))).count();
        assert!((800..1200).contains(&admitted), "{admitted}");
    }

    #[test]
    fn the_hash_is_stable() {
        // Pinned: a change here would move accounts in or out of a rollout.
        let pinned: Vec<u8> = (0..5).map(|i| bucket(&acct(i))).collect();
        assert_eq!(pinned, vec![7, 34, 91, 31, 12]);
    }
}
