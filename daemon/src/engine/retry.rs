//! Backoff for transient failures: exponential, capped, with jitter.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::EngineConfig;

/// Delays to wait before each retry, as many as the config allows.
pub fn delays(cfg: &EngineConfig) -> impl Iterator<Item = Duration> + Send + use<> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(cfg.backoff_ms.max(1)))
        .with_max_delay(Duration::from_millis(
            cfg.max_backoff_ms.max(cfg.backoff_ms),
        ))
        .with_max_times(cfg.retries as usize)
        .with_jitter()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_end() {
        let cfg = EngineConfig {
            retries: 5,
            backoff_ms: 100,
            max_backoff_ms: 400,
            ..EngineConfig::default()
        };
        let d: Vec<_> = delays(&cfg).collect();
        assert_eq!(d.len(), 5);
        assert!(d[0] >= Duration::from_millis(100));
        // Jitter adds up to one more base delay at most.
        assert!(d.iter().all(|x| *x <= Duration::from_millis(800)), "{d:?}");
        assert!(d[3] >= Duration::from_millis(400));
    }
}
