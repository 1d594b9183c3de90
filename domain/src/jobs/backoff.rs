//! Retry delays: exponential, capped, with jitter so that jobs failing together
//! (an SMTP server down for everyone) do not all come back at the same instant.

use chrono::Duration;

/// The delay before retry number `attempt` (1 after the first failure):
/// `base * 2^(attempt-1)`, capped at `max`, of which the upper half is
/// randomized by `jitter` (0.0 to 1.0) — "equal jitter", so a retry never
/// comes sooner than half the exponential delay.
pub fn delay(attempt: i32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(0);
    let full = base
        .num_milliseconds()
        .saturating_mul(1_i64 << exponent)
        .min(max.num_milliseconds())
        .max(0);
    let half = full / 2;
    let jittered = (half as f64 * jitter.clamp(0.0, 1.0)) as i64;
    Duration::milliseconds(half + jittered)
}

/// [`delay`] with a random jitter.
pub fn random_delay(attempt: i32, base: Duration, max: Duration) -> Duration {
    delay(attempt, base, max, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_jitters_within_the_upper_half() {
        let base = Duration::seconds(30);
        let max = Duration::seconds(3600);
        assert_eq!(delay(1, base, max, 0.0), Duration::seconds(15));
        assert_eq!(delay(1, base, max, 1.0), Duration::seconds(30));
        assert_eq!(delay(3, base, max, 1.0), Duration::seconds(120));
        assert_eq!(delay(30, base, max, 1.0), max, "capped");
        assert_eq!(delay(30, base, max, 0.0), Duration::seconds(1800));
        for _ in 0..100 {
            let d = random_delay(2, base, max);
            assert!(d >= Duration::seconds(30) && d <= Duration::seconds(60), "{d}");
        }
    }
}
