//! The strict rate-limit arithmetic, as pure functions over arrival times.
//!
//! Times are integer microseconds. The limit is a token bucket of capacity
//! `burst` refilled at `rate_per_minute / 60` tokens per second, judged with a
//! small `tolerance` for clock and network jitter: a set of arrivals is
//! conforming when, for every pair of arrivals `a_j <= a_k`,
//!
//! ```text
//! count(arrivals in [a_j, a_k]) <= burst + rate_per_second * (a_k - a_j + tolerance)
//! ```
//!
//! To stay exact, the comparison is done without any division:
//! `(count - burst) * 60_000_000 > rate_per_minute * (Δµs + tolerance_µs)`;
//! both products are exact in `f64` for integral rates and any realistic
//! duration (they stay far below 2^53).

use serde::{Deserialize, Serialize};

/// Microseconds in one minute, the unit `rate_per_minute` is expressed in.
const MICROS_PER_MINUTE: f64 = 60_000_000.0;

/// Upper bound for a `Retry-After` answer, in seconds (used when the rate is zero).
pub const MAX_RETRY_AFTER_SECS: u64 = 86_400;

/// The limit one account's arrivals are judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained rate: tokens added to the bucket per minute (may be fractional, never negative).
    pub rate_per_minute: f64,
    /// Bucket capacity: how many arrivals may come at the same instant.
    pub burst: u32,
    /// Slack added to every interval, in microseconds, for jitter between the
    /// product's clock and the moment the stub timestamps an arrival.
    pub tolerance_us: i64,
}

impl RateLimit {
    /// Whether `count` arrivals within an interval of `span_us` microseconds
    /// (first to last, both included) exceed the limit.
    #[must_use]
    pub fn exceeded(&self, count: usize, span_us: i64) -> bool {
        let excess = count as f64 - f64::from(self.burst);
        if excess <= 0.0 {
            return false;
        }
        let allowed_span = span_us.saturating_add(self.tolerance_us).max(0) as f64;
        excess * MICROS_PER_MINUTE > self.rate_per_minute * allowed_span
    }
}

/// Whether the arrival at `index` of the sorted slice `arrivals` is a violation:
/// whether any interval `[a_j, a_k]` with `j <= index <= k` holds more arrivals
/// than the limit allows.
///
/// In the normal case `index` is the last element, and this checks every
/// window ending at the new arrival, i.e. the definition: "any earlier arrival
/// `j` such that the arrivals in `[a_j, a_now]` exceed `b + r (a_now - a_j + tol)`".
/// When concurrent requests were timestamped out of order, the new arrival may
/// sit before a few later ones; the windows ending at those are checked too,
/// because the new arrival is inside them. The slice must be sorted ascending
/// and `index` must be the last position among equal times (insert with
/// [`insertion_index`]). O(n) per window end.
#[must_use]
pub fn is_violation(arrivals: &[i64], index: usize, limit: &RateLimit) -> bool {
    let Some(&now) = arrivals.get(index) else {
        return false;
    };
    for (k, &end) in arrivals.iter().enumerate().skip(index) {
        // The window [a_j, a_k] contains k - j + 1 arrivals because the slice is
        // sorted; the first of several equal a_j gives the largest count, and
        // every j is tried.
        for (j, &start) in arrivals.iter().enumerate().take(index + 1) {
            debug_assert!(start <= now && now <= end);
            if limit.exceeded(k - j + 1, end - start) {
                return true;
            }
        }
    }
    false
}

/// Position at which `at_us` is inserted into the sorted `arrivals`: after
/// every arrival with a time `<= at_us` (so usually the end).
#[must_use]
pub fn insertion_index(arrivals: &[i64], at_us: i64) -> usize {
    arrivals.partition_point(|&a| a <= at_us)
}

/// The earliest time (µs) at which one more arrival, appended after all of
/// `arrivals`, would conform. `None` when no time ever would (rate zero and
/// the burst already used up). Returns `i64::MIN` for an empty history with `burst >= 1`.
#[must_use]
pub fn earliest_conforming_us(arrivals: &[i64], limit: &RateLimit) -> Option<i64> {
    let n = arrivals.len();
    let mut earliest = i64::MIN;
    // Window starting at the hypothetical arrival itself: 1 arrival, zero span.
    if limit.exceeded(1, 0) {
        return None;
    }
    for (j, &start) in arrivals.iter().enumerate() {
        let count = n - j + 1;
        let excess = count as f64 - f64::from(limit.burst);
        if excess <= 0.0 {
            continue;
        }
        if limit.rate_per_minute <= 0.0 {
            return None;
        }
        // (count - b) * 60e6 <= rpm * (t - a_j + tol)  <=>  t >= a_j - tol + (count - b) * 60e6 / rpm
        let needed = (excess * MICROS_PER_MINUTE / limit.rate_per_minute).ceil();
        let needed = if needed >= i64::MAX as f64 {
            i64::MAX
        } else {
            needed as i64
        };
        let t = start
            .saturating_sub(limit.tolerance_us)
            .saturating_add(needed);
        earliest = earliest.max(t);
    }
    Some(earliest)
}

/// `Retry-After` seconds for an arrival judged at `now_us`: how long until
/// one more arrival would conform, given every arrival recorded so far
/// (including the violating one). Rounded up, at least 1, at most
/// [`MAX_RETRY_AFTER_SECS`].
#[must_use]
pub fn retry_after_secs(arrivals: &[i64], now_us: i64, limit: &RateLimit) -> u64 {
    match earliest_conforming_us(arrivals, limit) {
        None => MAX_RETRY_AFTER_SECS,
        Some(t) => {
            let wait_us = t.saturating_sub(now_us).max(0);
            let secs = (wait_us as u64).div_ceil(1_000_000);
            secs.clamp(1, MAX_RETRY_AFTER_SECS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    fn limit(rate_per_minute: f64, burst: u32, tolerance_ms: i64) -> RateLimit {
        RateLimit {
            rate_per_minute,
            burst,
            tolerance_us: tolerance_ms * 1000,
        }
    }

    /// Feeds arrivals one by one, as the server does, and returns the verdicts.
    fn judge(times: &[i64], limit: &RateLimit) -> Vec<bool> {
        let mut arrivals = Vec::new();
        times
            .iter()
            .map(|&t| {
                let i = insertion_index(&arrivals, t);
                arrivals.insert(i, t);
                is_violation(&arrivals, i, limit)
            })
            .collect()
    }

    /// Brute force over every pair, only for windows no longer than `max_span`.
    fn worst_short_window_ok(times: &[i64], limit: &RateLimit, max_span: i64) -> bool {
        for (j, &a) in times.iter().enumerate() {
            for (k, &b) in times.iter().enumerate().skip(j) {
                if b - a <= max_span && limit.exceeded(k - j + 1, b - a) {
                    return false;
                }
            }
        }
        true
    }

    #[test]
    fn exactly_burst_at_once_is_fine_one_more_is_not() {
        let l = limit(10.0, 10, 100);
        let verdicts = judge(&[0; 11], &l);
        assert!(verdicts[..10].iter().all(|v| !v));
        assert!(verdicts[10]);
    }

    #[test]
    fn next_token_exactly_after_refill_interval_is_fine() {
        // 10/min: one token every 6 s. Zero tolerance to test the exact boundary.
        let l = limit(10.0, 10, 0);
        let mut times = vec![0; 10];
        times.push(6 * SEC);
        assert!(!judge(&times, &l).iter().any(|v| *v));

        // One microsecond early is a violation without tolerance.
        let mut early = vec![0; 10];
        early.push(6 * SEC - 1);
        assert_eq!(judge(&early, &l).last(), Some(&true));
    }

    #[test]
    fn tolerance_absorbs_small_earliness_but_not_more() {
        let l = limit(600.0, 2, 100); // one token every 100 ms, 100 ms tolerance
        // b at t=0, then one at exactly 60/rpm s: fine.
        assert!(!judge(&[0, 0, 100_000], &l).iter().any(|v| *v));
        // Within the tolerance: fine.
        assert!(!judge(&[0, 0, 1], &l).iter().any(|v| *v));
        // Here the 100 ms tolerance is worth exactly one token, so even b+1 at
        // once sits on the boundary and is fine; b+2 is not.
        assert_eq!(judge(&[0, 0, 0, 0], &l), vec![false, false, false, true]);
        // With a 50 ms tolerance, 49 ms after is too early, 50 ms is fine.
        let l50 = limit(600.0, 2, 50);
        assert_eq!(judge(&[0, 0, 49_999], &l50), vec![false, false, true]);
        assert_eq!(judge(&[0, 0, 50_000], &l50), vec![false, false, false]);
    }

    #[test]
    fn burst_at_ten_per_minute_then_slightly_before_refill() {
        let l = limit(10.0, 10, 100);
        let mut times = vec![0; 10];
        times.push(6 * SEC - 100_000); // exactly at the tolerance: fine
        assert!(!judge(&times, &l).iter().any(|v| *v));
        let mut times = vec![0; 10];
        times.push(6 * SEC - 100_001); // beyond the tolerance: violation
        assert_eq!(judge(&times, &l).last(), Some(&true));
    }

    #[test]
    fn steady_rate_exactly_at_limit_never_violates() {
        let l = limit(60.0, 1, 0);
        let times: Vec<i64> = (0..500).map(|i| i * SEC).collect();
        assert!(!judge(&times, &l).iter().any(|v| *v));
    }

    #[test]
    fn sustained_rate_slightly_above_limit_is_caught_by_the_long_window() {
        // 60/min with burst 10: every 0.95 s is 5 % too fast. Every window of up
        // to 60 s conforms (at most 64 arrivals allowed by 10 + 60.1), but over
        // the long run the bucket drains.
        let l = limit(60.0, 10, 100);
        let period = 950_000;
        let times: Vec<i64> = (0..400).map(|i| i * period).collect();
        assert!(worst_short_window_ok(&times, &l, 60 * SEC));
        let verdicts = judge(&times, &l);
        let first = verdicts.iter().position(|v| *v);
        // n arrivals over (n-1)*0.95 s: n > 10 + (n-1)*0.95 + 0.1  <=>  n > 183.
        assert_eq!(first, Some(183), "the 184th arrival is the first violation");
        assert!(!verdicts[..183].iter().any(|v| *v));
    }

    #[test]
    fn violations_count_as_arrivals() {
        // burst 1, one per second. t=0 ok, t=0.5 violation, t=1.0 is then also a
        // violation because the rejected request still reached the API.
        let l = limit(60.0, 1, 0);
        assert_eq!(judge(&[0, SEC / 2, SEC], &l), vec![false, true, true]);
        assert_eq!(judge(&[0, SEC], &l), vec![false, false]);
    }

    #[test]
    fn zero_burst_and_zero_rate() {
        // burst 0: a lone request is only fine when the tolerance earns a token.
        assert_eq!(judge(&[0], &limit(60.0, 0, 0)), vec![true]);
        assert_eq!(judge(&[0], &limit(600.0, 0, 100)), vec![false]);
        // rate 0: the burst is all there ever is.
        assert_eq!(
            judge(&[0, 100 * SEC, 1000 * SEC], &limit(0.0, 2, 100)),
            vec![false, false, true]
        );
        assert_eq!(earliest_conforming_us(&[0, 1], &limit(0.0, 2, 0)), None);
        assert_eq!(
            retry_after_secs(&[0, 1], 1, &limit(0.0, 2, 0)),
            MAX_RETRY_AFTER_SECS
        );
    }

    #[test]
    fn out_of_order_insertion_checks_windows_through_later_arrivals() {
        // burst 2, 1/s, no tolerance. Arrivals at 0 and 10 ms recorded, then one
        // timestamped at 5 ms is inserted between them: the window [0, 10 ms]
        // now holds 3.
        let l = limit(60.0, 2, 0);
        let mut arrivals = vec![0, 10_000];
        let i = insertion_index(&arrivals, 5_000);
        assert_eq!(i, 1);
        arrivals.insert(i, 5_000);
        assert!(is_violation(&arrivals, i, &l));
    }

    #[test]
    fn equal_times_insert_after_existing() {
        assert_eq!(insertion_index(&[0, 5, 5, 7], 5), 3);
        assert_eq!(insertion_index(&[], 5), 0);
        assert_eq!(insertion_index(&[1, 2], 9), 2);
    }

    #[test]
    fn retry_after_points_at_a_conforming_time() {
        let l = limit(10.0, 10, 100);
        let mut arrivals = vec![0; 11]; // 11th violated
        assert!(is_violation(&arrivals, 10, &l));
        // 12 arrivals needed in [0, t]: 12 <= 10 + (t + 0.1)/6  =>  t >= 11.9 s
        let t = earliest_conforming_us(&arrivals, &l);
        assert_eq!(t, Some(12 * SEC - 100_000));
        assert_eq!(retry_after_secs(&arrivals, 0, &l), 12);
        // A retry at that time conforms, one microsecond earlier does not.
        if let Some(t) = t {
            arrivals.push(t);
            assert!(!is_violation(&arrivals, 11, &l));
            arrivals.pop();
            arrivals.push(t - 1);
            assert!(is_violation(&arrivals, 11, &l));
        }
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let l = limit(600.0, 2, 0);
        // 3 at once: next conforming at 200 ms -> rounds up to 1 s.
        assert_eq!(retry_after_secs(&[0, 0, 0], 0, &l), 1);
        assert_eq!(earliest_conforming_us(&[], &l), Some(i64::MIN));
    }

    #[test]
    fn empty_or_out_of_range_index_is_not_a_violation() {
        let l = limit(1.0, 1, 0);
        assert!(!is_violation(&[], 0, &l));
        assert!(!is_violation(&[1, 2], 5, &l));
    }
}
