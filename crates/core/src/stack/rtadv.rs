//! Router advertisements from the control thread (the advertiser itself,
//! data and timers, is `nd6::rtadv`): configuration per interface, the
//! solicitations the data path queued, the advertisements due sent as DAD
//! sends its solicitations, the final ones when an interface stops.

use super::{Stack, StackError};
use crate::iface::{Dad6State, IfIndex, Interface};
use crate::nd6::rtadv::{AdvStatus, RaConfig, RaDest, RaSend};
use crate::packet::PacketBuf;
use crate::percpu::CONTROL_SLOT;
use softnet_wire::ipv6::{multicast_mac, ALL_NODES};
use softnet_wire::ndp::NdpOption;
use std::fmt::Write;

#[derive(Debug, thiserror::Error)]
#[error("{0}: router advertisements: {1}")]
pub struct RaConfigError(pub String, pub String);

impl Stack {
    /// Sets (`Some`) or removes (`None`) what interface `name` advertises
    /// (rad.conf's `interface` block). A configuration that fails
    /// RFC 4861's checks is refused and changes nothing; a removed one
    /// sends its final advertisement (router lifetime 0).
    pub fn set_router_adv(&self, name: &str, config: Option<RaConfig>) -> Result<(), StackError> {
        let _c = self.control.lock();
        let ifp = self.find(name)?;
        if let Some(c) = &config {
            c.check().map_err(|e| StackError::RouterAdv(RaConfigError(name.into(), e)))?;
        }
        let now = self.clock.now();
        let fin = {
            let mut rng = self.rng.lock();
            self.rtadv.lock().configure(now, ifp.index(), config, ifp.is_up(), &mut rng)
        };
        if let Some(f) = fin {
            self.send_ra(&ifp, &f);
        }
        Ok(())
    }

    /// The configuration interface `name` advertises with.
    pub fn router_adv(&self, name: &str) -> Option<RaConfig> {
        let ifp = self.ifaces.load().by_name(name).cloned()?;
        self.rtadv.lock().config(ifp.index()).map(|c| (*c).clone())
    }

    /// The advertiser's part of the stack's timer: the solicitations the
    /// data path queued, then the advertisements due. Cheap when nothing
    /// is due: the daemon calls it more often than `tick` so that answers
    /// keep to MAX_RA_DELAY_TIME.
    pub fn rtadv_timer(&self) {
        let now = self.clock.now();
        let mut due = Vec::new();
        {
            let mut rng = self.rng.lock();
            let mut adv = self.rtadv.lock();
            for rs in self.nd6.take_solicits() {
                adv.rs_input(now, rs, &mut rng);
            }
            if adv.next_deadline().is_some_and(|t| t <= now) {
                let ifs = self.ifaces.load();
                let ready = |i: IfIndex| ifs.get(i).is_some_and(|ifp| link_local(ifp).is_some());
                adv.timer(now, ready, &mut rng, &mut due);
            }
        }
        let ifs = self.ifaces.load();
        for s in &due {
            if let Some(ifp) = ifs.get(s.ifindex) {
                self.send_ra(ifp, s);
            }
        }
    }

    /// The final advertisement of every advertising interface (the daemon
    /// stopping, RFC 4861 §6.2.5); they stop advertising.
    pub fn rtadv_shutdown(&self) {
        let ifs = self.ifaces.load();
        for ifp in ifs.iter() {
            let fin = self.rtadv.lock().remove(ifp.index());
            if let Some(f) = fin {
                self.send_ra(ifp, &f);
            }
        }
    }

    /// Hooks for interface changes (called with the control lock held).
    pub(super) fn rtadv_set_up(&self, ifp: &Interface, up: bool) {
        let mut rng = self.rng.lock();
        self.rtadv.lock().set_up(self.clock.now(), ifp.index(), up, &mut rng);
    }

    pub(super) fn rtadv_destroy(&self, ifp: &Interface) {
        let fin = self.rtadv.lock().remove(ifp.index());
        if let Some(f) = fin {
            self.send_ra(ifp, &f);
        }
    }

    /// Builds and sends one advertisement on `ifp` from its link-local
    /// address (none yet usable: nothing is sent).
    fn send_ra(&self, ifp: &Interface, s: &RaSend) {
        let Some(src) = link_local(ifp) else { return };
        let prefixes = if s.leaving { Vec::new() } else { s.config.advertised_prefixes(&ifp.inet6().addrs) };
        let mut opts = Vec::with_capacity(256);
        if s.leaving {
            // rad's leaving packet: the header only (and our address).
            if s.config.source_lladdr {
                opts.resize(8, 0);
                NdpOption::SourceLinkAddr(ifp.mac()).emit(&mut opts);
            }
        } else {
            s.config.build_options(ifp.mac(), &prefixes, &mut opts);
        }
        let (dst, dst_mac) = match s.dest {
            RaDest::AllNodes => (ALL_NODES, multicast_mac(ALL_NODES)),
            RaDest::Unicast(ip, mac) => (ip, mac),
        };
        let mut pool = self.control_pool.lock();
        let Some(mut p) = pool.alloc() else { return };
        let repr = s.config.repr(s.leaving, &opts);
        if crate::ether::build_ndp_repr_frame(&mut p, ifp.mac(), dst_mac, src, dst, repr).is_err() {
            pool.free(p);
            return;
        }
        let mut frames: Vec<PacketBuf> = vec![p];
        let sent = ifp.queue(CONTROL_SLOT).lock().send(&mut pool, &mut frames);
        let st = ifp.stats.get(CONTROL_SLOT);
        if sent == 1 {
            st.opackets.inc();
            let stats = self.stats.get(CONTROL_SLOT);
            stats.nd6.ra_sent.inc();
            stats.icmp6.outhist[softnet_wire::icmpv6::msg_type::ROUTER_ADVERT as usize].inc();
            self.rtadv.lock().count_sent(ifp.index());
        } else {
            st.oerrors.inc();
        }
    }

    /// `softnet rad`: the running configuration as rad -nv prints it
    /// (printconf.c), each interface with what it advertises now.
    pub fn rad_show(&self) -> String {
        let status = self.rtadv.lock().status();
        let ifs = self.ifaces.load();
        let mut o = String::new();
        for st in &status {
            let Some(ifp) = ifs.get(st.ifindex) else { continue };
            format_iface(&mut o, ifp, st, self.clock.now());
        }
        o
    }
}

/// The interface's link-local address once it has passed DAD.
fn link_local(ifp: &Interface) -> Option<std::net::Ipv6Addr> {
    ifp.inet6().addrs.iter().find(|a| a.is_link_local() && a.state == Dad6State::Preferred).map(|a| a.addr)
}

fn yesno(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// printconf.c's print_ra_options and interface block, plus the
/// prefixes the interface advertises now and what it has sent.
fn format_iface(o: &mut String, ifp: &Interface, st: &AdvStatus, now: crate::time::Instant) {
    let c = &st.config;
    let _ = writeln!(o, "interface {} {{", ifp.name());
    let _ = writeln!(o, "\tdefault router {}", yesno(c.default_router));
    let _ = writeln!(o, "\thop limit {}", c.hop_limit);
    let _ = writeln!(o, "\tmanaged address configuration {}", yesno(c.managed));
    let _ = writeln!(o, "\tother configuration {}", yesno(c.other));
    let pref = match c.preference {
        softnet_wire::ndp::RouterPreference::High => "high",
        softnet_wire::ndp::RouterPreference::Low => "low",
        _ => "medium",
    };
    let _ = writeln!(o, "\trouter preference {pref}");
    let _ = writeln!(o, "\trouter lifetime {}", c.router_lifetime);
    let _ = writeln!(o, "\treachable time {}", c.reachable_time);
    let _ = writeln!(o, "\tretrans timer {}", c.retrans_timer);
    let _ = writeln!(o, "\tsource link-layer address {}", yesno(c.source_lladdr));
    if c.mtu > 0 {
        let _ = writeln!(o, "\tmtu {}", c.mtu);
    }
    if !c.dns.nameservers.is_empty() || !c.dns.search.is_empty() {
        let _ = writeln!(o, "\tdns {{");
        let _ = writeln!(o, "\t\tlifetime {}", c.dns.lifetime);
        if !c.dns.nameservers.is_empty() {
            let _ = writeln!(o, "\t\tnameserver {{");
            for n in &c.dns.nameservers {
                let _ = writeln!(o, "\t\t\t{n}");
            }
            let _ = writeln!(o, "\t\t}}");
        }
        if !c.dns.search.is_empty() {
            let _ = writeln!(o, "\t\tsearch {{");
            for s in &c.dns.search {
                let _ = writeln!(o, "\t\t\t{s}");
            }
            let _ = writeln!(o, "\t\t}}");
        }
        let _ = writeln!(o, "\t}}");
    }
    let prefix_opts = |o: &mut String, p: &crate::nd6::rtadv::PrefixConf| {
        let _ = writeln!(o, "\t\tvalid lifetime {}", p.valid_lifetime);
        let _ = writeln!(o, "\t\tpreferred lifetime {}", p.preferred_lifetime);
        let _ = writeln!(o, "\t\ton-link {}", yesno(p.on_link));
        let _ = writeln!(o, "\t\tautonomous address-configuration {}", yesno(p.autonomous));
    };
    match &c.auto_prefix {
        Some(p) => {
            let _ = writeln!(o, "\tauto prefix {{");
            prefix_opts(o, p);
            let _ = writeln!(o, "\t}}");
        }
        None => {
            let _ = writeln!(o, "\tno auto prefix");
        }
    }
    for p in &c.prefixes {
        let _ = writeln!(o, "\tprefix {}/{} {{", p.prefix, p.prefix_len);
        prefix_opts(o, &p.conf);
        let _ = writeln!(o, "\t}}");
    }
    let _ = writeln!(o, "}}");
    // Not printconf: the state rad keeps to itself.
    let adv: Vec<String> =
        c.advertised_prefixes(&ifp.inet6().addrs).iter().map(|p| format!("{}/{}", p.prefix, p.prefix_len)).collect();
    let state = match (st.up, link_local(ifp).is_some()) {
        (false, _) => "down".to_string(),
        (true, false) => "waiting for its link-local address".to_string(),
        (true, true) => match st.next {
            Some(t) => format!("next in {}s", t.saturating_since(now).as_secs()),
            None => "idle".to_string(),
        },
    };
    let adv = if adv.is_empty() { "none".to_string() } else { adv.join(" ") };
    let _ = writeln!(
        o,
        "# {}: advertising {adv}; {} sent, {} solicitation{} heard; {state}",
        ifp.name(),
        st.sent,
        st.solicited,
        if st.solicited == 1 { "" } else { "s" }
    );
}
