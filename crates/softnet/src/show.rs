//! What the admin commands print, in the BSD tools' formats.

use crate::proto::AddrFamily;
use softnet_core::stack::Stack;
use std::fmt::Write;

/// `netstat -rn [-f inet|inet6]` for one routing table: the `Internet:`
/// and `Internet6:` sections as OpenBSD prints them.
pub fn netstat_rn(stack: &Stack, rtable: u16, af: AddrFamily) -> String {
    let v4 = (af != AddrFamily::Inet6).then(|| stack.routes.routes(rtable));
    let v6 = (af != AddrFamily::Inet).then(|| stack.routes.routes6(rtable));
    softnet_core::route::format_netstat_rn_families(
        v4.as_deref(),
        v6.as_deref(),
        |w| stack.ifaces.load().get_weak(w).map(|i| i.name().to_string()),
        rtable,
    )
}

/// `netstat -i`: one line for the link and one per address, as OpenBSD.
pub fn netstat_i(stack: &Stack) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<7} {:>5}  {:<13} {:<17} {:>10} {:>6} {:>10} {:>6} {:>6}",
        "Name", "Mtu", "Network", "Address", "Ipkts", "Ifail", "Opkts", "Ofail", "Idrop"
    );
    for ifp in stack.ifaces.load().iter() {
        let s = ifp.stats_total();
        let name = if ifp.is_up() { ifp.name().to_string() } else { format!("{}*", ifp.name()) };
        let _ = writeln!(
            o,
            "{:<7} {:>5}  {:<13} {:<17} {:>10} {:>6} {:>10} {:>6} {:>6}",
            name,
            ifp.mtu(),
            "<Link>",
            ifp.mac().to_string(),
            s.ipackets,
            s.ierrors,
            s.opackets,
            s.oerrors,
            s.idrops
        );
        for a in ifp.addrs().iter() {
            let net = softnet_core::route::netname(a.network(), a.prefix_len, softnet_core::route::RouteFlags::empty());
            let _ = writeln!(
                o,
                "{:<7} {:>5}  {:<13} {:<17} {:>10} {:>6} {:>10} {:>6} {:>6}",
                name,
                ifp.mtu(),
                net,
                a.addr.to_string(),
                s.ipackets,
                s.ierrors,
                s.opackets,
                s.oerrors,
                s.idrops
            );
        }
    }
    o
}

/// `arp -an`.
pub fn arp_an(stack: &Stack) -> String {
    stack.arp_show()
}
