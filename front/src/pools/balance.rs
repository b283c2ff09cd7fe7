//! Balancing: [`Pool`] picks a member for each try, [`Routes`] picks the pool.
//!
//! Two pickers, chosen per pool at start-up:
//! - equal weights: plain round robin on an atomic counter (no lock on the request
//!   path). The counter picks the k-th *available* member, so a member that is down
//!   does not double its successor's share.
//! - unequal weights: nginx's smooth weighted round robin (exact proportions, evenly
//!   interleaved: 2:1 gives a b a a b a ...), under a mutex held only for the pick.
//!
//! Weight 0 means *draining*: never picked, still checked; so does an operator's
//! drain (`POST /front/upstreams/{addr}/drain`), which holds for the address in every
//! pool. Unavailable members are
//! skipped without touching their state, so their weights are intact when they
//! return.
//!
//! *Panic*: when every non-draining member of a pool is unavailable and at least one
//! of them is held out only by passive checks (its active check still says up), the
//! pool tries those members anyway, as nginx resets its peers when all are marked
//! failed (Envoy's "panic threshold"). Passive holds come from failed requests, and a
//! burst of them (or a bug in telling whose fault a failure was) must not turn into
//! 502 for everything for `fail_timeout`; a member the active checks see down stays
//! out. A pool of dead members still fails fast: connects are refused at once.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::{Counter, Histogram};

use super::upstream::{LocalShard, Upstream};

/// A named set of upstreams balanced together.
#[derive(Debug)]
pub(crate) struct Pool {
    name: String,
    members: Vec<Member>,
    picker: Picker,
    /// `front_pool_panic_total{pool}`: requests that found the pool in panic.
    panics: Counter,
}

/// One upstream as a member of one pool: its weight and its per-pool metrics.
#[derive(Debug)]
pub(crate) struct Member {
    /// Shared with other pools listing the same address.
    pub(crate) upstream: Arc<Upstream>,
    /// The label this pool uses for it.
    pub(crate) label: String,
    /// Share of the pool's requests; 0: draining.
    pub(crate) weight: u32,
    /// `front_upstream_duration_seconds{pool, upstream}`.
    pub(crate) duration: Histogram,
    /// `front_requests_total{pool, upstream, status}` by status code 100..=599, made on
    /// first use so the request path neither formats labels nor looks up the registry.
    statuses: Box<[OnceLock<Counter>]>,
    pool: String,
}

#[derive(Debug)]
enum Picker {
    /// Next turn; the k-th available member is picked for turn k (mod available).
    RoundRobin(AtomicUsize),
    /// Smooth weighted round robin: each member's current weight.
    Weighted(Mutex<Vec<i64>>),
}

impl Member {
    /// A member of `pool`.
    pub(crate) fn new(pool: &str, label: &str, weight: u32, upstream: Arc<Upstream>) -> Self {
        Self {
            duration: metrics::histogram!(
                "front_upstream_duration_seconds",
                "pool" => pool.to_owned(),
                "upstream" => label.to_owned()
            ),
            statuses: (100..600).map(|_| OnceLock::new()).collect(),
            upstream,
            label: label.to_owned(),
            weight,
            pool: pool.to_owned(),
        }
    }

    /// Counts one answered request in `front_requests_total`.
    pub(crate) fn count_status(&self, status: u16) {
        match self.statuses.get(usize::from(status).wrapping_sub(100)) {
            Some(slot) => slot
                .get_or_init(|| requests_counter(&self.pool, &self.label, status))
                .increment(1),
            None => requests_counter(&self.pool, &self.label, status).increment(1),
        }
    }

    /// Whether requests may go to it now (weights aside): its upstream is available
    /// and, on the in-process path, its shard still serves.
    pub(crate) fn is_available(&self) -> bool {
        self.upstream.is_available() && self.upstream.local().is_none_or(LocalShard::is_live)
    }

    /// How the front reaches it: `inproc` or `tcp` (for `/front/status`).
    pub(crate) fn path(&self) -> &'static str {
        if self.upstream.local().is_some() {
            "inproc"
        } else {
            "tcp"
        }
    }

    /// Whether new requests may go to it: weighted, not drained by an operator.
    pub(crate) fn takes_requests(&self) -> bool {
        self.weight > 0 && !self.upstream.is_draining()
    }

    fn is_pickable(&self) -> bool {
        self.takes_requests() && self.is_available()
    }

    /// Whether it may be picked, in panic or not (see the module docs).
    fn is_eligible(&self, panic: bool) -> bool {
        if panic {
            self.takes_requests() && self.upstream.is_active_up()
        } else {
            self.is_pickable()
        }
    }
}

/// `front_requests_total{pool, upstream, status}` (also for `upstream="none"`).
pub(crate) fn requests_counter(pool: &str, upstream: &str, status: u16) -> Counter {
    metrics::counter!(
        "front_requests_total",
        "pool" => pool.to_owned(),
        "upstream" => upstream.to_owned(),
        "status" => status.to_string()
    )
}

impl Pool {
    /// A pool over `members` (at least one).
    pub(crate) fn new(name: &str, members: Vec<Member>) -> Self {
        let first = members.iter().map(|m| m.weight).find(|&w| w > 0);
        let equal = members
            .iter()
            .all(|m| m.weight == 0 || Some(m.weight) == first);
        let picker = if equal {
            Picker::RoundRobin(AtomicUsize::new(0))
        } else {
            Picker::Weighted(Mutex::new(vec![0; members.len()]))
        };
        let panics = metrics::counter!("front_pool_panic_total", "pool" => name.to_owned());
        panics.increment(0);
        Self {
            name: name.to_owned(),
            members,
            picker,
            panics,
        }
    }

    /// Whether the pool is in panic now: no member available, yet some non-draining
    /// member is held out by passive checks only.
    pub(crate) fn in_panic(&self) -> bool {
        !self.members.iter().any(Member::is_pickable)
            && self.members.iter().any(|m| m.is_eligible(true))
    }

    /// The pool's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The members, in config order.
    pub(crate) fn members(&self) -> &[Member] {
        &self.members
    }

    /// Picks the member for the next try, skipping unavailable, draining and `tried`
    /// members; `None` when no member is left. When the balancer's choice is at its
    /// `max_conns`, the next pickable member with room takes the request instead (as
    /// nginx skips a full server); if none has room, the choice stands and the request
    /// waits there for a slot.
    pub(crate) fn pick(&self, tried: &[usize]) -> Option<usize> {
        // `any` stops at the first available member: one load when all are up.
        let panic = !self.members.iter().any(Member::is_pickable);
        if panic && tried.is_empty() && self.in_panic() {
            self.panics.increment(1);
            tracing::debug!(pool = %self.name, "pool in panic: trying members held out passively");
        }
        let choice = self.balance(tried, panic)?;
        if self.members[choice].upstream.has_room() {
            return Some(choice);
        }
        let n = self.members.len();
        let spare = (1..n).map(|offset| (choice + offset) % n).find(|&i| {
            !tried.contains(&i)
                && self.members[i].is_eligible(panic)
                && self.members[i].upstream.has_room()
        });
        Some(spare.unwrap_or(choice))
    }

    /// The balancer's choice, capacity aside.
    fn balance(&self, tried: &[usize], panic: bool) -> Option<usize> {
        let pickable = |i: usize| !tried.contains(&i) && self.members[i].is_eligible(panic);
        match &self.picker {
            Picker::RoundRobin(next) => {
                let turn = next.fetch_add(1, Ordering::Relaxed);
                let n = self.members.len();
                // Fast path, every member up: exact round robin with no counting.
                let first = turn % n;
                if tried.is_empty() && !panic && self.members.iter().all(Member::is_pickable) {
                    return Some(first);
                }
                let available = (0..n).filter(|&i| pickable(i)).count();
                if available == 0 {
                    return None;
                }
                (0..n).filter(|&i| pickable(i)).nth(turn % available)
            }
            Picker::Weighted(current) => {
                // Poisoning only means a panic mid-pick; the weights are still numbers.
                let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, member) in self.members.iter().enumerate() {
                    if !pickable(i) {
                        continue;
                    }
                    let weight = i64::from(member.weight);
                    current[i] += weight;
                    total += weight;
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                let best = best?;
                current[best] -= total;
                Some(best)
            }
        }
    }
}

/// Path prefixes to pools; the longest matching prefix wins.
#[derive(Debug)]
pub(crate) struct Routes {
    /// (prefix, pool index), longest prefix first, so the first match is the longest.
    by_length: Vec<(String, usize)>,
    /// The pool for paths no route matches.
    fallback: usize,
}

impl Routes {
    /// Routes from (prefix, pool index) pairs.
    pub(crate) fn new(mut routes: Vec<(String, usize)>, fallback: usize) -> Self {
        routes.sort_by_key(|route| std::cmp::Reverse(route.0.len()));
        Self {
            by_length: routes,
            fallback,
        }
    }

    /// The pool index for `path`.
    pub(crate) fn pool_for(&self, path: &str) -> usize {
        self.by_length
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map_or(self.fallback, |&(_, pool)| pool)
    }

    /// The pool index for paths no route matches.
    pub(crate) fn fallback(&self) -> usize {
        self.fallback
    }

    /// (prefix, pool index), longest first.
    pub(crate) fn entries(&self) -> &[(String, usize)] {
        &self.by_length
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HealthConfig;
    use crate::pools::upstream::tests::test_limits;

    fn pool(weights: &[u32]) -> Pool {
        let members = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let label = format!("127.0.0.1:{}", 10 + i);
                let addr = label.parse().expect("literal");
                let upstream = Upstream::new(
                    &label,
                    addr,
                    None,
                    &[],
                    0,
                    &HealthConfig::default(),
                    &test_limits(),
                )
                .expect("valid");
                Member::new("test", &label, w, Arc::new(upstream))
            })
            .collect();
        Pool::new("test", members)
    }

    fn picks(pool: &Pool, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| pool.pick(&[]).expect("a member is available"))
            .collect()
    }

    #[test]
    fn equal_weights_take_turns() {
        assert_eq!(picks(&pool(&[1, 1, 1]), 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn smooth_weights_are_exact_and_interleaved() {
        assert_eq!(picks(&pool(&[2, 1]), 6), [0, 1, 0, 0, 1, 0]);
        assert_eq!(picks(&pool(&[5, 1, 1]), 7), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weight_zero_is_draining_and_never_picked() {
        assert_eq!(picks(&pool(&[0, 1, 1]), 4), [1, 2, 1, 2]);
        assert_eq!(picks(&pool(&[0, 2, 1]), 3), [1, 2, 1]);
        assert_eq!(pool(&[0, 0]).pick(&[]), None);
    }

    #[test]
    fn tried_and_unavailable_members_are_skipped_evenly() {
        let p = pool(&[1, 1, 1]);
        assert_eq!(p.pick(&[0, 1]), Some(2));
        assert_eq!(p.pick(&[0, 1, 2]), None);
        p.members[1].upstream.set_active_up(false);
        let got = picks(&p, 4);
        assert_eq!(got.iter().filter(|&&i| i == 0).count(), 2, "{got:?}");
        assert_eq!(got.iter().filter(|&&i| i == 2).count(), 2, "{got:?}");
    }

    #[test]
    fn a_pool_held_out_by_passive_checks_only_is_tried_anyway() {
        let p = pool(&[1, 1]);
        for member in &p.members {
            member
                .upstream
                .record_failure(crate::pools::upstream::FailureKind::Send);
        }
        assert!(p.in_panic());
        assert_eq!(picks(&p, 2).len(), 2, "both tried in panic");
        assert_eq!(p.pick(&[0, 1]), None, "each at most once per request");
        p.members[0].upstream.set_active_up(false);
        p.members[0]
            .upstream
            .record_failure(crate::pools::upstream::FailureKind::Send);
        assert_eq!(picks(&p, 3), [1, 1, 1], "actively down stays out");
        p.members[1].upstream.set_active_up(false);
        assert!(!p.in_panic());
        assert_eq!(p.pick(&[]), None);
    }

    #[test]
    fn the_longest_prefix_wins() {
        let routes = Routes::new(vec![("/api".into(), 1), ("/api/randoms".into(), 2)], 0);
        assert_eq!(routes.pool_for("/api/randoms"), 2);
        assert_eq!(routes.pool_for("/api/other"), 1);
        assert_eq!(routes.pool_for("/app"), 0);
    }
}
