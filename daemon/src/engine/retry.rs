//! Backoff for transient failures: exponential, capped, with jitter, for up
//! to the outage window (and at most `retries` attempts when one is set).

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::EngineConfig;

/// The waits before each retry of one piece of work.
pub struct Backoff {
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    since: Instant,
    window: Duration,
}

impl Backoff {
    pub fn new(cfg: &EngineConfig) -> Backoff {
        let builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(cfg.backoff_ms.max(1)))
            .with_max_delay(Duration::from_millis(
                cfg.max_backoff_ms.max(cfg.backoff_ms),
            ))
            .with_jitter();
        let builder = match cfg.retries {
            Some(n) => builder.with_max_times(n as usize),
            None => builder.without_max_times(),
        };
        Backoff {
            delays: Box::new(builder.build()),
            since: Instant::now(),
            window: Duration::from_secs(cfg.outage_window_s),
        }
    }

    /// The wait before the next attempt; `None` once the window (or the
    /// retries) are spent. The last wait ends at the window's end, so the
    /// last attempt is made then.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let left = self.window.checked_sub(self.since.elapsed())?;
        if left.is_zero() {
            return None;
        }
        self.delays.next().map(|d| d.min(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_end() {
        let cfg = EngineConfig {
            retries: Some(5),
            backoff_ms: 100,
            max_backoff_ms: 400,
            ..EngineConfig::default()
        };
        let mut b = Backoff::new(&cfg);
        let d: Vec<_> = std::iter::from_fn(|| b.next_delay()).collect();
        assert_eq!(d.len(), 5);
        assert!(d[0] >= Duration::from_millis(100));
        // Jitter adds up to one more base delay at most.
        assert!(d.iter().all(|x| *x <= Duration::from_millis(800)), "{d:?}");
        assert!(d[3] >= Duration::from_millis(400));
    }

    #[test]
    fn without_a_retry_count_the_window_ends_the_waits() {
        let cfg = EngineConfig {
            retries: None,
            backoff_ms: 1,
            max_backoff_ms: 2,
            outage_window_s: 0,
            ..EngineConfig::default()
        };
        assert_eq!(Backoff::new(&cfg).next_delay(), None);
        let cfg = EngineConfig {
            outage_window_s: 60,
            ..cfg
        };
        let mut b = Backoff::new(&cfg);
        // Far more than any count default: only time ends them.
        assert!((0..1000).all(|_| b.next_delay().is_some()));
    }
}
