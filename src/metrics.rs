//! The latency histogram handed to Prosody's statistics. The native side counts every request's
//! latency in fixed buckets ([`crate::dispatch::LATENCY_BUCKETS`]) with their sum; Prosody's
//! public API only takes one observation at a time. So what came since the last collection is
//! replayed: the observations of a bucket at one value inside it, chosen so that the histogram's
//! sum comes out as the native one, at most a budget of them per go (the Lua shim performs the
//! samples and spreads a large backlog over main loop turns).

/// One go of the replay: how many observations to sample at which value, per bucket, and what
/// has been replayed once they are.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// The value every observation of a bucket is sampled at, one per bucket (the last is the
    /// one past the last bound).
    pub values: Vec<f64>,
    /// How many to sample now, per bucket.
    pub counts: Vec<u64>,
    /// The bucket counts replayed once these are: the next go's `seen`.
    pub seen: Vec<u64>,
    /// The sum replayed once these are: the native sum exactly when nothing is left.
    pub seen_sum: f64,
    /// Whether observations are left for a next go (the budget ran out).
    pub left: bool,
}

/// The next go of the replay. `bounds`: the finite buckets' upper bounds; `totals`: the native
/// counts per bucket (one more than `bounds`, the last past the last bound, not cumulative) and
/// `total_sum` their sum; `seen` and `seen_sum`: what was replayed so far (shorter or empty
/// before the first go). None when nothing new came.
pub fn replay(
    bounds: &[f64],
    totals: &[u64],
    total_sum: f64,
    seen: &[u64],
    seen_sum: f64,
    budget: u64,
) -> Option<Replay> {
    let seen_at = |i: usize| seen.get(i).copied().unwrap_or(0);
    let low = |i: usize| if i == 0 { 0.0 } else { bounds[i - 1] };
    let new: Vec<u64> = totals.iter().enumerate().map(|(i, &total)| total.saturating_sub(seen_at(i))).collect();
    let count: u64 = new.iter().sum();
    if count == 0 {
        return None;
    }
    let (mut low_sum, mut high_sum, mut beyond) = (0.0, 0.0, 0);
    for (i, &n) in new.iter().enumerate() {
        match bounds.get(i) {
            Some(&bound) => {
                low_sum += n as f64 * low(i);
                high_sum += n as f64 * bound;
            }
            None => beyond = n,
        }
    }
    let sum = total_sum - seen_sum;
    // Every finite bucket's observations the same share of the way through it; those past the
    // last bound take what remains of the sum. With some past it, that share cannot be solved
    // for: the middle.
    let share =
        if beyond == 0 && high_sum > low_sum { ((sum - low_sum) / (high_sum - low_sum)).clamp(1e-9, 1.0) } else { 0.5 };
    let mut values = Vec::with_capacity(new.len());
    let mut finite_sum = 0.0;
    for (i, &n) in new.iter().enumerate() {
        let value = match bounds.get(i) {
            // Never past the bound by rounding.
            Some(&bound) => bound.min(low(i) + share * (bound - low(i))),
            // Past the last bound: what remains of the sum, strictly above that bound.
            None => {
                let last = bounds.last().copied().unwrap_or(0.0) * (1.0 + 1e-9);
                if beyond > 0 {
                    last.max((sum - finite_sum) / beyond as f64)
                } else {
                    last
                }
            }
        };
        if i < bounds.len() {
            finite_sum += n as f64 * value;
        }
        values.push(value);
    }
    let (mut left_budget, mut replayed_sum) = (budget, seen_sum);
    let mut counts = Vec::with_capacity(new.len());
    let mut next_seen = Vec::with_capacity(new.len());
    for (i, &n) in new.iter().enumerate() {
        let now = n.min(left_budget);
        left_budget -= now;
        replayed_sum += now as f64 * values[i];
        counts.push(now);
        next_seen.push(seen_at(i) + now);
    }
    let left = count > budget;
    Some(Replay { values, counts, seen: next_seen, seen_sum: if left { replayed_sum } else { total_sum }, left })
}

/// The arguments of [`latency_replay_lua`], as Lua passes them.
type ReplayArgs = (Vec<f64>, Vec<u64>, f64, Option<Vec<u64>>, Option<f64>, u64);

/// `latency_replay(bounds, totals, total_sum, seen, seen_sum, budget)`, for Lua: [`replay`] as a
/// table (`values`, `counts`, `seen`, `seen_sum`, `left`), or nil when nothing new came.
/// `seen` and `seen_sum` may be nil (nothing replayed yet).
pub fn latency_replay_lua(
    lua: &mlua::Lua,
    (bounds, totals, total_sum, seen, seen_sum, budget): ReplayArgs,
) -> mlua::Result<Option<mlua::Table>> {
    let Some(replay) = replay(&bounds, &totals, total_sum, &seen.unwrap_or_default(), seen_sum.unwrap_or(0.0), budget)
    else {
        return Ok(None);
    };
    let t = lua.create_table()?;
    t.set("values", lua.create_sequence_from(replay.values)?)?;
    t.set("counts", lua.create_sequence_from(replay.counts)?)?;
    t.set("seen", lua.create_sequence_from(replay.seen)?)?;
    t.set("seen_sum", replay.seen_sum)?;
    t.set("left", replay.left)?;
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 2] = [0.1, 1.0];

    /// What Prosody's histogram would hold after sampling a replay: counts per bucket and sum.
    fn sampled(r: &Replay) -> (Vec<u64>, f64) {
        (r.counts.clone(), r.values.iter().zip(&r.counts).map(|(v, &n)| v * n as f64).sum())
    }

    #[test]
    fn nothing_new_is_no_replay() {
        assert_eq!(replay(&BOUNDS, &[0, 0, 0], 0.0, &[], 0.0, 5000), None);
        assert_eq!(replay(&BOUNDS, &[3, 2, 1], 5.25, &[3, 2, 1], 5.25, 5000), None);
    }

    #[test]
    fn each_observation_in_its_bucket_and_the_native_sum() {
        // 3 up to 0.1 s, 2 up to 1 s, 1 above: 0.15 + 1.1 + 4 = 5.25 s.
        let r = replay(&BOUNDS, &[3, 2, 1], 5.25, &[], 0.0, 5000).unwrap();
        let (counts, sum) = sampled(&r);
        assert_eq!(counts, [3, 2, 1]);
        assert!((sum - 5.25).abs() < 1e-9, "{sum}");
        assert!(r.values[0] <= 0.1 && r.values[1] > 0.1 && r.values[1] <= 1.0 && r.values[2] > 1.0, "{r:?}");
        assert!(!r.left);
        assert_eq!((r.seen, r.seen_sum), (vec![3, 2, 1], 5.25));
        // Then only what came since.
        let r = replay(&BOUNDS, &[3, 4, 1], 6.25, &[3, 2, 1], 5.25, 5000).unwrap();
        let (counts, sum) = sampled(&r);
        assert_eq!(counts, [0, 2, 0]);
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn values_stay_inside_their_buckets_whatever_the_sum() {
        // A sum below what the buckets allow, and one above: the values are clamped to them.
        for sum in [0.0, 0.3, 100.0] {
            let r = replay(&BOUNDS, &[2, 2, 0], sum, &[], 0.0, 5000).unwrap();
            assert!(r.values[0] > 0.0 && r.values[0] <= 0.1, "{sum}: {r:?}");
            assert!(r.values[1] > 0.1 && r.values[1] <= 1.0, "{sum}: {r:?}");
        }
        // Past the last bound, never at it, even when the finite buckets took the whole sum.
        let r = replay(&BOUNDS, &[1, 1, 1], 0.5, &[], 0.0, 5000).unwrap();
        assert!(r.values[2] > 1.0, "{r:?}");
    }

    #[test]
    fn a_backlog_is_replayed_within_the_budget_and_ends_with_the_native_sum() {
        let total_sum = 12000.0 * 0.05 + 2.0;
        let (mut seen, mut seen_sum, mut goes, mut sampled_count) = (Vec::new(), 0.0, 0, 0);
        loop {
            let r = replay(&BOUNDS, &[12000, 0, 1], total_sum, &seen, seen_sum, 5000).unwrap();
            let n: u64 = r.counts.iter().sum();
            assert!(n <= 5000);
            sampled_count += n;
            goes += 1;
            (seen, seen_sum) = (r.seen, r.seen_sum);
            if !r.left {
                break;
            }
        }
        assert_eq!((goes, sampled_count), (3, 12001));
        assert_eq!(seen, [12000, 0, 1]);
        assert_eq!(seen_sum, total_sum);
        assert_eq!(replay(&BOUNDS, &[12000, 0, 1], total_sum, &seen, seen_sum, 5000), None);
    }
}
