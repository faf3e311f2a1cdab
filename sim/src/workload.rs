//! The scenario's traffic, drawn once from the seed: every message's arrival
//! time, account and priority, sorted by arrival.

use crate::scenario::{Scenario, Traffic};
use shared::message::Priority;
use std::collections::HashMap;

/// Message ids are `BASE + index`: deterministic, and the index is read back
/// from the id (the upstream model and the checker key on it).
pub const ID_BASE: u128 = 0x5151_0000_0000_7000_8000_0000_0000_0000;

#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Microseconds after the start.
    pub at_us: u64,
    /// Index into [`Workload::accounts`].
    pub account: u32,
    pub priority: Priority,
    /// The traffic source whose messages are enqueued ten to a
    /// `SendMessageBatch` (a campaign); `None`: one `SendMessage` each.
    pub batch: Option<u32>,
}

#[derive(Debug, Default)]
pub struct Workload {
    pub accounts: Vec<String>,
    /// Sorted by `at_us`; a message's index here is its id's index.
    pub arrivals: Vec<Arrival>,
    index: HashMap<String, u32>,
}

impl Workload {
    pub fn generate(s: &Scenario, rng: &mut fastrand::Rng) -> Self {
        let mut w = Workload::default();
        let horizon_us = s.duration_s * 1_000_000;
        for (source, t) in s.traffic.iter().enumerate() {
            match t {
                Traffic::Steady {
                    prefix,
                    accounts,
                    per_hour,
                    zipf,
                    priority,
                } => {
                    let ids = w.add_accounts(prefix, *accounts);
                    let cdf = zipf_cdf(*accounts, *zipf);
                    let mean_gap_us = 3_600_000_000.0 / per_hour;
                    let mut t = 0.0f64;
                    loop {
                        // Exponential gaps: a Poisson stream.
                        t += -mean_gap_us * (1.0 - rng.f64()).ln();
                        if t >= horizon_us as f64 {
                            break;
                        }
                        let u = rng.f64();
                        let k = cdf.partition_point(|c| *c < u).min(cdf.len() - 1);
                        w.arrivals.push(Arrival {
                            at_us: t as u64,
                            account: ids[k],
                            priority: *priority,
                            batch: None,
                        });
                    }
                }
                Traffic::Burst {
                    prefix,
                    accounts,
                    messages,
                    at_s,
                    over_s,
                    priority,
                    campaign,
                } => {
                    let batch = campaign.then_some(source as u32);
                    let ids = w.add_accounts(prefix, *accounts);
                    for &account in &ids {
                        for _ in 0..*messages {
                            let t = at_s + over_s * rng.f64();
                            w.arrivals.push(Arrival {
                                at_us: (t * 1e6) as u64,
                                account,
                                priority: *priority,
                                batch,
                            });
                        }
                    }
                }
            }
        }
        // Stable: equal times keep the order they were drawn in.
        w.arrivals.sort_by_key(|a| a.at_us);
        w
    }

    /// The indices of accounts `{prefix}_0 .. {prefix}_{n-1}`: two sources
    /// with one prefix share their accounts.
    fn add_accounts(&mut self, prefix: &str, n: u32) -> Vec<u32> {
        (0..n)
            .map(|i| {
                let name = format!("{prefix}_{i}");
                match self.index.get(&name) {
                    Some(&k) => k,
                    None => {
                        let k = self.accounts.len() as u32;
                        self.index.insert(name.clone(), k);
                        self.accounts.push(name);
                        k
                    }
                }
            })
            .collect()
    }
}

/// Cumulative Zipf weights `1 / k^s` over `n` ranks, normalised to end at 1.
fn zipf_cdf(n: u32, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|k| {
            acc += 1.0 / f64::from(k).powf(s);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

/// A message's index from its id (`None`: not a simulation id).
pub fn index_of(id: uuid::Uuid) -> Option<usize> {
    id.as_u128()
        .checked_sub(ID_BASE)
        .and_then(|i| usize::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_puts_most_traffic_on_the_first_ranks() {
        let cdf = zipf_cdf(1000, 1.0);
        assert!((cdf[999] - 1.0).abs() < 1e-12);
        assert!(cdf[9] > 0.35, "top 10 of 1000 carry {}", cdf[9]);
        let flat = zipf_cdf(4, 0.0);
        assert_eq!(flat, vec![0.25, 0.5, 0.75, 1.0]);
    }
}
