//! Duplicate address detection (RFC 4862 §5.4; OpenBSD nd6_nbr.c's
//! `nd6_dad_start`, `nd6_dad_timer`, `nd6_dad_ns_input`,
//! `nd6_dad_na_input`) as data and timers, without packet I/O.
//!
//! An address under test is *tentative*. [`DadTable::start`] begins the
//! test, after a delay (RFC 4862 §5.4.2: a random one up to
//! MAX_RTR_SOLICITATION_DELAY for the first address of an interface that
//! comes up). [`DadTable::timer`] then asks for `transmits`
//! (DupAddrDetectTransmits, OpenBSD's ip6_dad_count: 1) solicitations,
//! RETRANS_TIMER apart ([`DadAction::SendNs`]: from ::, to the target's
//! solicited-node group, no source link-layer option), and RETRANS_TIMER
//! after the last one, with nothing heard, the address is good
//! ([`DadAction::Done`]).
//!
//! What the data path hears about a tentative address goes to
//! [`DadTable::input`]: a solicitation from :: for it (another node is
//! testing it too, §5.4.3) or an advertisement of it (another node has it,
//! §5.4.4). Either makes it *duplicated*; the next timer run reports
//! [`DadAction::Duplicated`] (logged and counted there), and it is never
//! used. A solicitation for a tentative address from a unicast source is
//! not DAD's business: the data path drops it (§5.4.3). The data path
//! must not hand DAD its own looped-back solicitations (it compares the
//! source MAC with its own).

use crate::iface::IfIndex;
use crate::time::Instant;
use std::net::Ipv6Addr;
use std::time::Duration;

/// DAD tunables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DadConfig {
    /// DupAddrDetectTransmits (ip6_dad_count).
    pub transmits: u32,
    /// RETRANS_TIMER between solicitations and after the last.
    pub retrans: Duration,
    /// MAX_RTR_SOLICITATION_DELAY: the bound of the random delay before
    /// the first solicitation of an interface coming up.
    pub max_delay: Duration,
}

impl Default for DadConfig {
    fn default() -> Self {
        DadConfig { transmits: 1, retrans: Duration::from_secs(1), max_delay: Duration::from_secs(1) }
    }
}

/// What was heard about a tentative address.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DadInput {
    /// A neighbor solicitation from :: with it as the target.
    Ns,
    /// A neighbor advertisement with it as the target.
    Na,
}

/// What the owner of the table must do.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DadAction {
    /// Send a DAD solicitation for `target` on `ifindex` now.
    SendNs { ifindex: IfIndex, target: Ipv6Addr },
    /// No other node has it: the address is no longer tentative.
    Done { ifindex: IfIndex, addr: Ipv6Addr },
    /// Another node has it: mark it duplicated (with what was heard).
    Duplicated { ifindex: IfIndex, addr: Ipv6Addr, ns_in: u32, na_in: u32, ns_out: u32 },
}

#[derive(Clone, Debug)]
struct Test {
    ifindex: IfIndex,
    addr: Ipv6Addr,
    /// Solicitations sent.
    sent: u32,
    /// When the next thing happens (a solicitation or the verdict).
    next: Instant,
    ns_in: u32,
    na_in: u32,
}

/// The addresses under test.
#[derive(Debug, Default)]
pub struct DadTable {
    config: DadConfig,
    tests: Vec<Test>,
}

impl DadTable {
    pub fn new(config: DadConfig) -> Self {
        DadTable { config, tests: Vec::new() }
    }

    pub fn config(&self) -> &DadConfig {
        &self.config
    }

    /// nd6_dad_start: tests `addr` on `ifindex`; the first solicitation
    /// after `delay`. A test of the same address starts over.
    pub fn start(&mut self, now: Instant, ifindex: IfIndex, addr: Ipv6Addr, delay: Duration) {
        self.stop(ifindex, addr);
        self.tests.push(Test { ifindex, addr, sent: 0, next: now + delay, ns_in: 0, na_in: 0 });
    }

    /// nd6_dad_stop: the address went away (or its interface went down).
    pub fn stop(&mut self, ifindex: IfIndex, addr: Ipv6Addr) {
        self.tests.retain(|t| !(t.ifindex == ifindex && t.addr == addr));
    }

    /// Stops every test on an interface.
    pub fn stop_interface(&mut self, ifindex: IfIndex) {
        self.tests.retain(|t| t.ifindex != ifindex);
    }

    /// Whether `addr` on `ifindex` is being tested.
    pub fn is_testing(&self, ifindex: IfIndex, addr: Ipv6Addr) -> bool {
        self.tests.iter().any(|t| t.ifindex == ifindex && t.addr == addr)
    }

    /// nd6_dad_ns_input / nd6_dad_na_input: a message about `addr` from
    /// another node. True if the address was under test (it is now a
    /// duplicate; the next [`timer`](Self::timer) reports it).
    pub fn input(&mut self, ifindex: IfIndex, addr: Ipv6Addr, what: DadInput) -> bool {
        let Some(t) = self.tests.iter_mut().find(|t| t.ifindex == ifindex && t.addr == addr) else {
            return false;
        };
        match what {
            DadInput::Ns => t.ns_in += 1,
            DadInput::Na => t.na_in += 1,
        }
        true
    }

    /// When [`timer`](Self::timer) next has something to do (a duplicate
    /// waiting is due now).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.tests.iter().map(|t| if t.ns_in + t.na_in > 0 { Instant::ZERO } else { t.next }).min()
    }

    /// nd6_dad_timer over every test: duplicates found, solicitations
    /// due, verdicts reached, appended to `out` in that order per test.
    pub fn timer(&mut self, now: Instant, out: &mut Vec<DadAction>) {
        let cfg = &self.config;
        self.tests.retain_mut(|t| {
            if t.ns_in + t.na_in > 0 {
                out.push(DadAction::Duplicated {
                    ifindex: t.ifindex,
                    addr: t.addr,
                    ns_in: t.ns_in,
                    na_in: t.na_in,
                    ns_out: t.sent,
                });
                return false;
            }
            if now < t.next {
                return true;
            }
            if t.sent < cfg.transmits {
                t.sent += 1;
                t.next = now + cfg.retrans;
                out.push(DadAction::SendNs { ifindex: t.ifindex, target: t.addr });
                return true;
            }
            out.push(DadAction::Done { ifindex: t.ifindex, addr: t.addr });
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IF1: IfIndex = IfIndex(1);
    const IF2: IfIndex = IfIndex(2);
    const T0: Instant = Instant::from_secs(100);

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn run(d: &mut DadTable, now: Instant) -> Vec<DadAction> {
        let mut v = Vec::new();
        d.timer(now, &mut v);
        v
    }

    #[test]
    fn an_address_nobody_answers_for_is_done_one_retrans_timer_after_its_solicitation() {
        let mut d = DadTable::new(DadConfig::default());
        let a = ip("fd00:1::1");
        d.start(T0, IF1, a, Duration::from_millis(300));
        assert_eq!(run(&mut d, T0), vec![], "nothing before the delay");
        assert_eq!(d.next_deadline(), Some(T0 + Duration::from_millis(300)));
        let t1 = T0 + Duration::from_millis(300);
        assert_eq!(run(&mut d, t1), vec![DadAction::SendNs { ifindex: IF1, target: a }]);
        assert_eq!(run(&mut d, t1 + Duration::from_millis(999)), vec![]);
        assert!(d.is_testing(IF1, a));
        assert_eq!(run(&mut d, t1 + Duration::from_secs(1)), vec![DadAction::Done { ifindex: IF1, addr: a }]);
        assert!(!d.is_testing(IF1, a));
        assert_eq!(d.next_deadline(), None);
    }

    #[test]
    fn several_transmits_are_retrans_timer_apart() {
        let mut d = DadTable::new(DadConfig { transmits: 3, ..DadConfig::default() });
        let a = ip("fe80::1");
        d.start(T0, IF1, a, Duration::ZERO);
        for i in 0..3 {
            let t = T0 + Duration::from_secs(i);
            assert_eq!(run(&mut d, t), vec![DadAction::SendNs { ifindex: IF1, target: a }], "{i}");
        }
        assert_eq!(run(&mut d, T0 + Duration::from_secs(3)), vec![DadAction::Done { ifindex: IF1, addr: a }]);
    }

    #[test]
    fn an_ns_from_unspecified_or_an_na_makes_the_address_a_duplicate() {
        for what in [DadInput::Ns, DadInput::Na] {
            let mut d = DadTable::new(DadConfig::default());
            let a = ip("fd00:1::1");
            d.start(T0, IF1, a, Duration::ZERO);
            assert_eq!(run(&mut d, T0).len(), 1);
            assert!(!d.input(IF2, a, what), "the same address on another interface is another test");
            assert!(!d.input(IF1, ip("fd00:1::2"), what));
            assert!(d.input(IF1, a, what));
            assert_eq!(d.next_deadline(), Some(Instant::ZERO), "reported at once");
            let (ns_in, na_in) = if what == DadInput::Ns { (1, 0) } else { (0, 1) };
            assert_eq!(
                run(&mut d, T0 + Duration::from_millis(10)),
                vec![DadAction::Duplicated { ifindex: IF1, addr: a, ns_in, na_in, ns_out: 1 }]
            );
            assert_eq!(run(&mut d, T0 + Duration::from_secs(5)), vec![], "never done");
        }
    }

    #[test]
    fn a_duplicate_heard_before_the_first_solicitation_still_counts() {
        let mut d = DadTable::new(DadConfig::default());
        let a = ip("fd00:1::1");
        d.start(T0, IF1, a, Duration::from_millis(800));
        assert!(d.input(IF1, a, DadInput::Ns));
        assert_eq!(
            run(&mut d, T0),
            vec![DadAction::Duplicated { ifindex: IF1, addr: a, ns_in: 1, na_in: 0, ns_out: 0 }]
        );
    }

    #[test]
    fn stop_and_restart_forget_the_old_test() {
        let mut d = DadTable::new(DadConfig::default());
        let (a, b) = (ip("fd00:1::1"), ip("fe80::1"));
        d.start(T0, IF1, a, Duration::ZERO);
        d.start(T0, IF1, b, Duration::ZERO);
        d.start(T0, IF2, b, Duration::ZERO);
        d.stop(IF1, a);
        assert!(!d.input(IF1, a, DadInput::Na));
        d.stop_interface(IF1);
        assert!(!d.is_testing(IF1, b));
        assert!(d.is_testing(IF2, b));
        assert!(d.input(IF2, b, DadInput::Na));
        d.start(T0, IF2, b, Duration::ZERO);
        assert_eq!(run(&mut d, T0), vec![DadAction::SendNs { ifindex: IF2, target: b }], "the restart is clean");
    }
}
