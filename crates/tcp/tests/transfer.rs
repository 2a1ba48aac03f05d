//! Whole transfers between two engines over the simulated link.

mod sim;

use proptest::prelude::*;
use sim::{pattern, LinkProfile, World};
use softnet_tcp::{CcAlgorithm, Config, State};
use std::time::Duration;

fn lossy(loss: f64, dup: f64, reorder: f64) -> LinkProfile {
    LinkProfile {
        loss,
        dup,
        reorder,
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(15),
        rate: 12_500_000,
    }
}

fn check_done(w: &World) {
    assert_eq!(w.received.len(), w.sent.len(), "all bytes delivered");
    assert!(w.received == w.sent, "bytes delivered equal bytes sent");
    assert_eq!(w.a.state(), State::Closed, "A closed (after TIME_WAIT)");
    assert_eq!(w.b.state(), State::Closed, "B closed");
    assert_eq!(w.a.error(), None);
    assert_eq!(w.b.error(), None);
}

#[test]
fn clean_transfer_then_both_ends_close() {
    let mut w = World::new(1, Config::default(), Config::default(), LinkProfile::clean(5), pattern(1_000_000, 1));
    w.run(Duration::from_secs(600));
    check_done(&w);
    assert_eq!(w.a.stats().rexmt_segs, 0);
}

#[test]
fn transfer_survives_loss_with_sack_and_cubic() {
    let mut w = World::new(2, Config::default(), Config::default(), lossy(0.02, 0.0, 0.0), pattern(500_000, 2));
    w.run(Duration::from_secs(600));
    check_done(&w);
    assert!(w.a.stats().fast_recoveries > 0, "loss was repaired by fast recovery: {:?}", w.a.stats());
}

#[test]
fn transfer_survives_loss_with_newreno_and_no_sack() {
    let cfg = Config { sack: false, cc: CcAlgorithm::NewReno, ..Config::default() };
    let mut w = World::new(3, cfg.clone(), cfg, lossy(0.02, 0.01, 0.01), pattern(300_000, 3));
    w.run(Duration::from_secs(900));
    check_done(&w);
    assert!(w.a.stats().fast_recoveries > 0, "{:?}", w.a.stats());
}

#[test]
fn transfer_without_timestamps_or_window_scaling() {
    let cfg = Config { timestamps: false, window_scaling: false, ..Config::default() };
    let mut w = World::new(4, cfg.clone(), cfg, lossy(0.01, 0.01, 0.05), pattern(200_000, 4));
    w.run(Duration::from_secs(900));
    check_done(&w);
}

#[test]
fn large_window_needs_scaling_and_gets_it() {
    let cfg = Config { rx_buffer: 1 << 20, tx_buffer: 1 << 20, ..Config::default() };
    let mut w = World::new(5, cfg.clone(), cfg, LinkProfile::clean(20), pattern(4_000_000, 5));
    w.run(Duration::from_secs(600));
    check_done(&w);
}

#[test]
fn reader_that_stalls_gets_zero_window_probes() {
    let cfg_b = Config { rx_buffer: 4096, ..Config::default() };
    let mut w = World::new(6, Config::default(), cfg_b, LinkProfile::clean(5), pattern(100_000, 6));
    // B reads nothing for a while: A fills the window and probes.
    w.b_read_limit = Some(0);
    let until = w.now + Duration::from_secs(20);
    while w.now < until && w.step() {}
    assert!(w.a.stats().window_probes > 0, "{:?}", w.a.stats());
    assert!(w.received.is_empty());
    w.b_read_limit = None;
    w.run(Duration::from_secs(600));
    check_done(&w);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    /// Whatever the link does, the bytes delivered equal the bytes sent
    /// and both ends close.
    #[test]
    fn any_link_delivers_everything_and_closes(
        seed in any::<u64>(),
        len in 0usize..150_000,
        loss in 0.0f64..0.15,
        dup in 0.0f64..0.1,
        reorder in 0.0f64..0.2,
        sack in any::<bool>(),
        ts in any::<bool>(),
        newreno in any::<bool>(),
        nodelay in any::<bool>(),
    ) {
        let cfg = Config {
            sack,
            timestamps: ts,
            nodelay,
            cc: if newreno { CcAlgorithm::NewReno } else { CcAlgorithm::Cubic },
            rx_buffer: 32 * 1024,
            tx_buffer: 32 * 1024,
            max_retries: 30,
            ..Config::default()
        };
        let mut w = World::new(seed, cfg.clone(), cfg, lossy(loss, dup, reorder), pattern(len, seed));
        w.run(Duration::from_secs(3600));
        prop_assert_eq!(w.received.len(), w.sent.len());
        prop_assert!(w.received == w.sent);
        prop_assert_eq!(w.a.state(), State::Closed);
        prop_assert_eq!(w.b.state(), State::Closed);
    }
}
