//! How ferryctl writes sizes, rates and durations: one unit system (IEC:
//! KiB, MiB, GiB) and rounded numbers everywhere, tables, bars and pages.

use std::time::Duration;

/// `512 B`, `12.3 KiB`, `1.5 MiB`, `2.04 GiB`.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{n} B"),
        1 | 2 => format!("{v:.1} {}", UNITS[u]),
        _ => format!("{v:.2} {}", UNITS[u]),
    }
}

/// Items per second, rounded: `0.4`, `12`, `1,250`.
pub fn per_second(rate: f64) -> String {
    if rate < 10.0 {
        format!("{rate:.1}")
    } else {
        thousands(rate.round() as u64)
    }
}

/// `1250000` as `1,250,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration rounded for people: `45s`, `3m 20s`, `2h 05m`, `3d 4h`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// The recent rate of a counter and what it makes of the rest: samples of
/// the last `window` only, so an ETA follows today's speed, not the start's.
#[derive(Debug, Clone)]
pub struct Rate {
    window: Duration,
    samples: std::collections::VecDeque<(Duration, u64, u64)>,
}

impl Rate {
    pub fn new(window: Duration) -> Rate {
        Rate {
            window,
            samples: Default::default(),
        }
    }

    /// Records `items` and `bytes` done at `at` (time since any fixed start).
    pub fn note(&mut self, at: Duration, items: u64, bytes: u64) {
        self.samples.push_back((at, items, bytes));
        while self
            .samples
            .front()
            .is_some_and(|(t, ..)| at.saturating_sub(*t) > self.window)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// (items, bytes) per second over the window; `None` before two samples
    /// a second apart.
    pub fn per_second(&self) -> Option<(f64, f64)> {
        let (t0, i0, b0) = *self.samples.front()?;
        let (t1, i1, b1) = *self.samples.back()?;
        let secs = t1.saturating_sub(t0).as_secs_f64();
        (secs >= 1.0).then(|| {
            (
                i1.saturating_sub(i0) as f64 / secs,
                b1.saturating_sub(b0) as f64 / secs,
            )
        })
    }

    /// Time left for `remaining` items at the recent rate.
    pub fn eta(&self, remaining: u64) -> Option<Duration> {
        let (items, _) = self.per_second()?;
        (items > 0.0).then(|| Duration::from_secs_f64(remaining as f64 / items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_one_unit_system() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(12_595), "12.3 KiB");
        assert_eq!(size(1_572_864), "1.5 MiB");
        assert_eq!(size(2_190_433_321), "2.04 GiB");
    }

    #[test]
    fn numbers_and_durations_are_rounded() {
        assert_eq!(per_second(0.42), "0.4");
        assert_eq!(per_second(1249.6), "1,250");
        assert_eq!(thousands(1_250_000), "1,250,000");
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(200)), "3m 20s");
        assert_eq!(duration(Duration::from_secs(7500)), "2h 05m");
        assert_eq!(duration(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d 4h");
    }

    #[test]
    fn the_eta_follows_the_recent_rate() {
        let s = Duration::from_secs;
        let mut r = Rate::new(s(30));
        r.note(s(0), 0, 0);
        assert_eq!(r.per_second(), None, "one sample is no rate");
        // Slow at first: 1 item/s for a minute.
        for t in 1..=60 {
            r.note(s(t), t, t * 1000);
        }
        assert_eq!(r.eta(100), Some(s(100)));
        // Then 10 items/s: within the window the old pace is forgotten.
        for t in 61..=100 {
            r.note(s(t), 60 + (t - 60) * 10, 0);
        }
        let (items, _) = r.per_second().unwrap();
        assert!((items - 10.0).abs() < 1e-9, "{items}");
        assert_eq!(r.eta(100), Some(s(10)));
    }
}
