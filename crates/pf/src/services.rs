//! Service names as pfctl resolves them: `getservbyname(name, "tcp")`, then
//! `"udp"` (parse.y's getservice), whatever the rule's protocol. The table
//! is OpenBSD's /etc/services, built in, so a ruleset means the same on
//! every host and in tests.

use std::sync::OnceLock;

/// One `/etc/services` line: the name and its aliases, the port, TCP or not.
struct Service {
    names: Vec<&'static str>,
    port: u16,
    tcp: bool,
}

fn table() -> &'static [Service] {
    static TABLE: OnceLock<Vec<Service>> = OnceLock::new();
    TABLE.get_or_init(|| {
        include_str!("services.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let name = w.next()?;
                let (port, proto) = w.next()?.split_once('/')?;
                let mut names = vec![name];
                names.extend(w);
                Some(Service { names, port: port.parse().ok()?, tcp: proto == "tcp" })
            })
            .collect()
    })
}

/// The port a service name stands for: its TCP entry, else its UDP entry.
pub fn port_by_name(name: &str) -> Option<u16> {
    let find = |tcp: bool| table().iter().find(|s| s.tcp == tcp && s.names.contains(&name)).map(|s| s.port);
    find(true).or_else(|| find(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_resolve_tcp_first_then_udp() {
        assert_eq!(port_by_name("ssh"), Some(22));
        assert_eq!(port_by_name("www"), Some(80));
        assert_eq!(port_by_name("http"), Some(80));
        // an alias that only the TCP entry has (pfctl's regress pf5 uses it
        // on a UDP rule)
        assert_eq!(port_by_name("ident"), Some(113));
        // UDP only
        assert_eq!(port_by_name("snmp"), Some(161));
        assert_eq!(port_by_name("route"), Some(520));
        assert_eq!(port_by_name("syslog"), Some(514));
        assert_eq!(port_by_name("shell"), Some(514));
        assert_eq!(port_by_name("nosuchservice"), None);
        assert_eq!(port_by_name("tcp"), None);
        assert!(table().len() > 300);
    }
}
