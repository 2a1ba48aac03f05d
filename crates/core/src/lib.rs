//! softnet's stack: packet buffers, interfaces, ARP, IPv4, ICMP, routes,
//! counters and workers. Pure: no OS calls; the clock, the links and the
//! entropy random generators are seeded from are injected (the default
//! entropy, `rng::OsEntropy`, is the one system call), so the same code
//! runs on real devices and in memory.

// No unsafe code in the stack; its tests allow one measurement (the
// thread's CPU time, route/tests6.rs) to use clock_gettime.
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]

pub mod arp;
pub mod ether;
pub mod filter;
pub mod gen;
pub mod gso;
mod hold;
pub mod host;
pub mod hostif;
pub mod iface;
pub mod link;
pub mod loopback;
pub mod mbuf;
pub mod nd6;
pub mod neighcache;
pub mod packet;
pub mod percpu;
pub mod reass;
pub mod reass6;
pub mod refrag6;
pub mod rng;
pub mod route;
pub mod rtmsg;
pub mod sock;
pub mod stack;
pub mod stats;
pub mod stats6;
pub mod time;
pub mod topo;
pub mod vlink;
pub mod worker;
