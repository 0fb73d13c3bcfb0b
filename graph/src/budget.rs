//! Exchange Online's limits for one application acting on one mailbox:
//! concurrent requests, requests per window, upload bytes per window, and
//! the pauses a `429` with `Retry-After` imposes. Every caller in the
//! process that acts for the same (mailbox, application) shares one
//! `Budget`, found through `Budgets`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// How much one application may ask of one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests in flight at once.
    pub concurrent: u32,
    /// Requests started within `request_window`.
    pub requests: u32,
    pub request_window: Duration,
    /// Bytes uploaded within `upload_window`.
    pub upload_bytes: u64,
    pub upload_window: Duration,
}

impl Limits {
    /// Exchange Online's published limits for Microsoft Graph: 4 concurrent
    /// requests, 10,000 requests per 10 minutes, 150 MB uploaded per 5
    /// minutes, per application and mailbox.
    pub const EXCHANGE_ONLINE: Limits = Limits {
        concurrent: 4,
        requests: 10_000,
        request_window: Duration::from_secs(600),
        upload_bytes: 150 * 1024 * 1024,
        upload_window: Duration::from_secs(300),
    };

    /// The highest request rate these limits allow, per second.
    pub fn ceiling_per_second(&self) -> f64 {
        self.requests as f64 / self.request_window.as_secs_f64()
    }
}

/// How far back `BudgetState` reports throttling.
const THROTTLE_HISTORY: Duration = Duration::from_secs(3600);

/// One (mailbox, application)'s share of the destination.
pub struct Budget {
    limits: Limits,
    permits: Semaphore,
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// Start times of the requests within the request window, with counts.
    requests: VecDeque<(Instant, u32)>,
    request_count: u64,
    /// Upload sizes within the upload window.
    uploads: VecDeque<(Instant, u64)>,
    upload_total: u64,
    /// No request starts before this (the service's `Retry-After`).
    paused_until: Option<Instant>,
    /// When the service throttled and how much pause each answer added.
    throttles: VecDeque<(Instant, Duration)>,
}

impl Window {
    fn expire(&mut self, now: Instant, limits: &Limits) {
        while let Some(&(t, n)) = self.requests.front() {
            if now.duration_since(t) < limits.request_window {
                break;
            }
            self.requests.pop_front();
            self.request_count -= n as u64;
        }
        while let Some(&(t, n)) = self.uploads.front() {
            if now.duration_since(t) < limits.upload_window {
                break;
            }
            self.uploads.pop_front();
            self.upload_total -= n;
        }
        while let Some(&(t, _)) = self.throttles.front() {
            if now.duration_since(t) < THROTTLE_HISTORY {
                break;
            }
            self.throttles.pop_front();
        }
    }

    /// How long until `requests` more requests and `bytes` more upload fit.
    fn wait_for(&self, now: Instant, limits: &Limits, requests: u32, bytes: u64) -> Duration {
        let mut wait = self
            .paused_until
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        // A request larger than the whole window still goes, once the window is empty.
        let mut over =
            (self.request_count + requests as u64).saturating_sub(limits.requests as u64);
        if self.request_count > 0 && over > 0 {
            for &(t, n) in &self.requests {
                if over <= n as u64 || self.request_count == n as u64 {
                    wait = wait.max((t + limits.request_window).saturating_duration_since(now));
                    break;
                }
                over -= n as u64;
            }
        }
        let mut over = (self.upload_total + bytes).saturating_sub(limits.upload_bytes);
        if bytes > 0 && self.upload_total > 0 && over > 0 {
            for &(t, n) in &self.uploads {
                if over <= n {
                    wait = wait.max((t + limits.upload_window).saturating_duration_since(now));
                    break;
                }
                over -= n;
            }
            if over > 0 {
                let last = self.uploads.back().map_or(now, |&(t, _)| t);
                wait = wait.max((last + limits.upload_window).saturating_duration_since(now));
            }
        }
        wait
    }
}

/// Held while a request is in flight.
pub struct Permit<'a> {
    _permits: SemaphorePermit<'a>,
}

/// What a budget shows to `watch` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetState {
    pub limits: Limits,
    pub in_flight: u32,
    pub requests_in_window: u64,
    pub uploaded_in_window: u64,
    /// Time left of the service's current `Retry-After`.
    pub paused_for: Duration,
    /// Pause the service imposed in the last hour, and in how many answers.
    pub throttled_last_hour: Duration,
    pub throttles_last_hour: u32,
}

impl std::fmt::Display for BudgetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "throttled by the destination: {} s in the last hour ({} answers); {} of {} requests in {} s, {} in flight",
            self.throttled_last_hour.as_secs(),
            self.throttles_last_hour,
            self.requests_in_window,
            self.limits.requests,
            self.limits.request_window.as_secs(),
            self.in_flight
        )
    }
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            permits: Semaphore::new(limits.concurrent.max(1) as usize),
            window: Mutex::new(Window::default()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Waits until `requests` requests (a `$batch` counts each of its
    /// parts) carrying `upload` bytes may start, and counts them.
    pub async fn acquire(&self, requests: u32, upload: u64) -> Permit<'_> {
        let slots = requests.clamp(1, self.limits.concurrent.max(1));
        let permits = self
            .permits
            .acquire_many(slots)
            .await
            .expect("budget semaphore is never closed");
        loop {
            let wait = {
                let mut w = self.window.lock().expect("budget lock");
                let now = Instant::now();
                w.expire(now, &self.limits);
                let wait = w.wait_for(now, &self.limits, requests, upload);
                if wait.is_zero() {
                    w.requests.push_back((now, requests));
                    w.request_count += requests as u64;
                    if upload > 0 {
                        w.uploads.push_back((now, upload));
                        w.upload_total += upload;
                    }
                    w.paused_until = None;
                    break;
                }
                wait
            };
            tokio::time::sleep(wait).await;
        }
        Permit { _permits: permits }
    }

    /// The service said `Retry-After`: nothing starts for `d` from now.
    pub fn pause(&self, d: Duration) {
        let mut w = self.window.lock().expect("budget lock");
        let now = Instant::now();
        let until = now + d;
        let before = w.paused_until.filter(|&t| t > now).unwrap_or(now);
        if until > before {
            w.paused_until = Some(until);
            w.throttles.push_back((now, until - before));
        } else {
            w.throttles.push_back((now, Duration::ZERO));
        }
        tracing::info!(
            retry_after_ms = d.as_millis() as u64,
            "throttled by the destination"
        );
    }

    pub fn state(&self) -> BudgetState {
        let mut w = self.window.lock().expect("budget lock");
        let now = Instant::now();
        w.expire(now, &self.limits);
        BudgetState {
            limits: self.limits,
            in_flight: self.limits.concurrent.max(1) - self.permits.available_permits() as u32,
            requests_in_window: w.request_count,
            uploaded_in_window: w.upload_total,
            paused_for: w
                .paused_until
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now)),
            throttled_last_hour: w.throttles.iter().map(|&(_, d)| d).sum(),
            throttles_last_hour: w.throttles.len() as u32,
        }
    }
}

/// The budgets of one process, one per (mailbox, application).
pub struct Budgets {
    limits: Limits,
    map: Mutex<HashMap<(String, String), Arc<Budget>>>,
}

impl Budgets {
    pub fn new(limits: Limits) -> Budgets {
        Budgets {
            limits,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The process's budgets at Exchange Online's limits.
    pub fn global() -> Arc<Budgets> {
        static GLOBAL: OnceLock<Arc<Budgets>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Arc::new(Budgets::new(Limits::EXCHANGE_ONLINE)))
            .clone()
    }

    /// The budget of `mailbox` (an address, any case) for `app` (a client id).
    pub fn get(&self, mailbox: &str, app: &str) -> Arc<Budget> {
        let key = (mailbox.to_ascii_lowercase(), app.to_ascii_lowercase());
        self.map
            .lock()
            .expect("budgets lock")
            .entry(key)
            .or_insert_with(|| Arc::new(Budget::new(self.limits)))
            .clone()
    }

    /// Every budget's state, by (mailbox, application).
    pub fn states(&self) -> Vec<((String, String), BudgetState)> {
        let map = self.map.lock().expect("budgets lock");
        let mut v: Vec<_> = map.iter().map(|(k, b)| (k.clone(), b.state())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            concurrent: 2,
            requests: 5,
            request_window: Duration::from_millis(400),
            upload_bytes: 1000,
            upload_window: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn the_request_window_holds_back_the_sixth_request() {
        let b = Budget::new(small());
        let start = Instant::now();
        for _ in 0..5 {
            drop(b.acquire(1, 0).await);
        }
        assert!(start.elapsed() < Duration::from_millis(100));
        drop(b.acquire(1, 0).await);
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn uploads_wait_for_their_window_and_an_oversize_one_still_goes() {
        let b = Budget::new(small());
        let start = Instant::now();
        drop(b.acquire(1, 800).await);
        drop(b.acquire(1, 800).await);
        assert!(start.elapsed() >= Duration::from_millis(300));
        let b = Budget::new(small());
        drop(b.acquire(1, 5000).await);
        assert_eq!(b.state().uploaded_in_window, 5000);
    }

    #[tokio::test]
    async fn concurrency_is_capped_and_a_pause_is_reported() {
        let b = Arc::new(Budget::new(small()));
        let p1 = b.acquire(1, 0).await;
        let _p2 = b.acquire(1, 0).await;
        assert_eq!(b.state().in_flight, 2);
        let b2 = b.clone();
        let third = tokio::spawn(async move {
            let _p = b2.acquire(1, 0).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished());
        drop(p1);
        third.await.unwrap();

        b.pause(Duration::from_secs(2));
        b.pause(Duration::from_secs(1));
        let s = b.state();
        assert_eq!(s.throttles_last_hour, 2);
        assert_eq!(s.throttled_last_hour, Duration::from_secs(2));
        assert!(
            s.to_string()
                .starts_with("throttled by the destination: 2 s in the last hour")
        );
    }

    #[test]
    fn budgets_are_shared_per_mailbox_and_application() {
        let bs = Budgets::new(small());
        assert!(Arc::ptr_eq(
            &bs.get("Ann@X.com", "app"),
            &bs.get("ann@x.com", "APP")
        ));
        assert!(!Arc::ptr_eq(
            &bs.get("ann@x.com", "app"),
            &bs.get("bob@x.com", "app")
        ));
    }
}
