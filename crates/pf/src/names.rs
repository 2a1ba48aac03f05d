//! Built-in name tables: protocols (like /etc/protocols), services (like
//! /etc/services), ICMP and ICMPv6 types and codes, and pf's timeout names.
//!
//! softnet runs without the host's databases, so pf.conf names resolve from
//! these tables; both directions (name → number for parsing, number → name
//! for printing) use the same table so a printed ruleset parses again.

/// IP protocol numbers with their canonical names first; aliases follow the
/// canonical entry and are only used for parsing.
const PROTOCOLS: &[(&str, u8)] = &[
    ("ip", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("ggp", 3),
    ("ipencap", 4),
    ("st", 5),
    ("tcp", 6),
    ("egp", 8),
    ("igp", 9),
    ("pup", 12),
    ("udp", 17),
    ("hmp", 20),
    ("xns-idp", 22),
    ("rdp", 27),
    ("iso-tp4", 29),
    ("xtp", 36),
    ("ddp", 37),
    ("idpr-cmtp", 38),
    ("ipv6", 41),
    ("ipv6-route", 43),
    ("ipv6-frag", 44),
    ("idrp", 45),
    ("rsvp", 46),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("skip", 57),
    ("ipv6-icmp", 58),
    ("icmp6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("rspf", 73),
    ("vmtp", 81),
    ("eigrp", 88),
    ("ospf", 89),
    ("ipip", 94),
    ("etherip", 97),
    ("encap", 98),
    ("pim", 103),
    ("ipcomp", 108),
    ("carp", 112),
    ("vrrp", 112),
    ("l2tp", 115),
    ("sctp", 132),
    ("mpls-in-ip", 137),
    ("pfsync", 240),
];

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

pub fn proto_by_name(name: &str) -> Option<u8> {
    PROTOCOLS.iter().find(|(n, _)| *n == name).map(|&(_, p)| p)
}

pub fn proto_name(num: u8) -> Option<&'static str> {
    PROTOCOLS.iter().find(|&&(_, p)| p == num).map(|&(n, _)| n)
}

/// A service name's port as pfctl's getservice finds it (OpenBSD's
/// /etc/services, TCP entry first).
pub fn service_by_name(name: &str) -> Option<u16> {
    crate::services::port_by_name(name)
}

pub const ICMP_UNREACH: u8 = 3;
pub const ICMP_UNREACH_PORT: u8 = 3;
pub const ICMP6_DST_UNREACH: u8 = 1;
pub const ICMP6_DST_UNREACH_NOPORT: u8 = 4;

const ICMP_TYPES: &[(&str, u8)] = &[
    ("echoreq", 8),
    ("echorep", 0),
    ("unreach", 3),
    ("squench", 4),
    ("redir", 5),
    ("althost", 6),
    ("routeradv", 9),
    ("routersol", 10),
    ("timex", 11),
    ("paramprob", 12),
    ("timereq", 13),
    ("timerep", 14),
    ("inforeq", 15),
    ("inforep", 16),
    ("maskreq", 17),
    ("maskrep", 18),
    ("trace", 30),
    ("dataconv", 31),
    ("mobredir", 32),
    ("ipv6-where", 33),
    ("ipv6-here", 34),
    ("mobregreq", 35),
    ("mobregrep", 36),
    ("skip", 39),
    ("photuris", 40),
];

const ICMP6_TYPES: &[(&str, u8)] = &[
    ("unreach", 1),
    ("toobig", 2),
    ("timex", 3),
    ("paramprob", 4),
    ("echoreq", 128),
    ("echorep", 129),
    ("groupqry", 130),
    ("listqry", 130),
    ("grouprep", 131),
    ("listenrep", 131),
    ("groupterm", 132),
    ("listendone", 132),
    ("routersol", 133),
    ("routeradv", 134),
    ("neighbrsol", 135),
    ("neighbradv", 136),
    ("redir", 137),
    ("routrrenum", 138),
    ("wrureq", 139),
    ("wrurep", 140),
    ("fqdnreq", 139),
    ("fqdnrep", 140),
    ("niqry", 139),
    ("nirep", 140),
    ("mtraceresp", 200),
    ("mtrace", 201),
    ("listenrepv2", 143),
];

/// (name, type, code)
const ICMP_CODES: &[(&str, u8, u8)] = &[
    ("net-unr", 3, 0),
    ("host-unr", 3, 1),
    ("proto-unr", 3, 2),
    ("port-unr", 3, 3),
    ("needfrag", 3, 4),
    ("srcfail", 3, 5),
    ("net-unk", 3, 6),
    ("host-unk", 3, 7),
    ("isolate", 3, 8),
    ("net-prohib", 3, 9),
    ("host-prohib", 3, 10),
    ("net-tos", 3, 11),
    ("host-tos", 3, 12),
    ("filter-prohib", 3, 13),
    ("host-preced", 3, 14),
    ("cutoff-preced", 3, 15),
    ("redir-net", 5, 0),
    ("redir-host", 5, 1),
    ("redir-tos-net", 5, 2),
    ("redir-tos-host", 5, 3),
    ("normal-adv", 9, 0),
    ("common-adv", 9, 16),
    ("transit", 11, 0),
    ("reassemb", 11, 1),
    ("badhead", 12, 0),
    ("optmiss", 12, 1),
    ("badlen", 12, 2),
    ("unknown-ind", 40, 1),
    ("auth-fail", 40, 2),
    ("decrypt-fail", 40, 3),
];

const ICMP6_CODES: &[(&str, u8, u8)] = &[
    ("admin-unr", 1, 1),
    ("noroute-unr", 1, 0),
    ("beyond-unr", 1, 2),
    ("addr-unr", 1, 3),
    ("port-unr", 1, 4),
    ("transit", 3, 0),
    ("reassemb", 3, 1),
    ("badhead", 4, 0),
    ("nxthdr", 4, 1),
    ("redironlink", 137, 0),
    ("redirrouter", 137, 1),
];

fn types(v6: bool) -> &'static [(&'static str, u8)] {
    if v6 {
        ICMP6_TYPES
    } else {
        ICMP_TYPES
    }
}

fn codes(v6: bool) -> &'static [(&'static str, u8, u8)] {
    if v6 {
        ICMP6_CODES
    } else {
        ICMP_CODES
    }
}

pub fn icmp_type_by_name(name: &str, v6: bool) -> Option<u8> {
    types(v6).iter().find(|(n, _)| *n == name).map(|&(_, t)| t)
}

pub fn icmp_type_name(ty: u8, v6: bool) -> Option<&'static str> {
    types(v6).iter().find(|&&(_, t)| t == ty).map(|&(n, _)| n)
}

pub fn icmp_code_by_name(ty: u8, name: &str, v6: bool) -> Option<u8> {
    codes(v6).iter().find(|&&(n, t, _)| t == ty && n == name).map(|&(_, _, c)| c)
}

pub fn icmp_code_name(ty: u8, code: u8, v6: bool) -> Option<&'static str> {
    codes(v6).iter().find(|&&(_, t, c)| t == ty && c == code).map(|&(n, _, _)| n)
}

/// pf's state and fragment timeouts, in the kernel's index order (which is
/// the order per-rule timeouts are printed in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timeout {
    TcpFirst,
    TcpOpening,
    TcpEstablished,
    TcpClosing,
    TcpFinWait,
    TcpClosed,
    UdpFirst,
    UdpSingle,
    UdpMultiple,
    IcmpFirst,
    IcmpError,
    OtherFirst,
    OtherSingle,
    OtherMultiple,
    Frag,
    Interval,
    AdaptiveStart,
    AdaptiveEnd,
    SrcTrack,
    TcpTsDiff,
}

impl Timeout {
    pub const ALL: [Timeout; 20] = [
        Timeout::TcpFirst,
        Timeout::TcpOpening,
        Timeout::TcpEstablished,
        Timeout::TcpClosing,
        Timeout::TcpFinWait,
        Timeout::TcpClosed,
        Timeout::UdpFirst,
        Timeout::UdpSingle,
        Timeout::UdpMultiple,
        Timeout::IcmpFirst,
        Timeout::IcmpError,
        Timeout::OtherFirst,
        Timeout::OtherSingle,
        Timeout::OtherMultiple,
        Timeout::Frag,
        Timeout::Interval,
        Timeout::AdaptiveStart,
        Timeout::AdaptiveEnd,
        Timeout::SrcTrack,
        Timeout::TcpTsDiff,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Timeout::TcpFirst => "tcp.first",
            Timeout::TcpOpening => "tcp.opening",
            Timeout::TcpEstablished => "tcp.established",
            Timeout::TcpClosing => "tcp.closing",
            Timeout::TcpFinWait => "tcp.finwait",
            Timeout::TcpClosed => "tcp.closed",
            Timeout::UdpFirst => "udp.first",
            Timeout::UdpSingle => "udp.single",
            Timeout::UdpMultiple => "udp.multiple",
            Timeout::IcmpFirst => "icmp.first",
            Timeout::IcmpError => "icmp.error",
            Timeout::OtherFirst => "other.first",
            Timeout::OtherSingle => "other.single",
            Timeout::OtherMultiple => "other.multiple",
            Timeout::Frag => "frag",
            Timeout::Interval => "interval",
            Timeout::AdaptiveStart => "adaptive.start",
            Timeout::AdaptiveEnd => "adaptive.end",
            Timeout::SrcTrack => "src.track",
            Timeout::TcpTsDiff => "tcp.tsdiff",
        }
    }

    pub fn by_name(name: &str) -> Option<Timeout> {
        Timeout::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// pf's default in seconds (adaptive.* follow the default state limit).
    pub fn default_secs(self) -> u32 {
        match self {
            Timeout::TcpFirst => 120,
            Timeout::TcpOpening => 30,
            Timeout::TcpEstablished => 86400,
            Timeout::TcpClosing => 900,
            Timeout::TcpFinWait => 45,
            Timeout::TcpClosed => 90,
            Timeout::UdpFirst => 60,
            Timeout::UdpSingle => 30,
            Timeout::UdpMultiple => 60,
            Timeout::IcmpFirst => 20,
            Timeout::IcmpError => 10,
            Timeout::OtherFirst => 60,
            Timeout::OtherSingle => 30,
            Timeout::OtherMultiple => 60,
            Timeout::Frag => 60,
            Timeout::Interval => 10,
            Timeout::AdaptiveStart => 60000,
            Timeout::AdaptiveEnd => 120000,
            Timeout::SrcTrack => 0,
            Timeout::TcpTsDiff => 30,
        }
    }

    /// Only the per-connection timeouts (dotted names) may be given in a
    /// rule's state options.
    pub fn allowed_per_rule(self) -> bool {
        self.name().contains('.')
    }
}

/// TCP flag letters in pf's bit order: F S R P A U E W.
pub const TCP_FLAG_LETTERS: &str = "FSRPAUEW";

pub fn parse_tcp_flags(s: &str) -> Option<u8> {
    let mut f = 0u8;
    for c in s.chars() {
        let i = TCP_FLAG_LETTERS.find(c)?;
        f |= 1 << i;
    }
    Some(f)
}

pub fn format_tcp_flags(f: u8) -> String {
    TCP_FLAG_LETTERS.chars().enumerate().filter(|(i, _)| f & (1 << i) != 0).map(|(_, c)| c).collect()
}

/// syslog's priority names in `<syslog.h>`'s `prioritynames` order, which
/// is the order pfctl's `loglevel_to_string` searches (so level 3 prints
/// as `err`, 4 as `warn`, 0 as `emerg`). syslog's `none` is left out:
/// pfctl refuses it.
const SYSLOG_LEVELS: &[(&str, u8)] = &[
    ("alert", 1),
    ("crit", 2),
    ("debug", 7),
    ("emerg", 0),
    ("err", 3),
    ("error", 3),
    ("info", 6),
    ("notice", 5),
    ("panic", 0),
    ("warn", 4),
    ("warning", 4),
];

/// syslog's `LOG_ERR`: pf's debug level until `set debug` changes it.
pub const LOG_ERR: u8 = 3;

/// pfctl's `string_to_loglevel` for `set debug`: a number 0..=7, or a
/// syslog priority name in any case.
pub fn syslog_level_by_name(s: &str) -> Option<u8> {
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return s.parse::<u8>().ok().filter(|l| *l <= 7);
    }
    let lower = s.to_ascii_lowercase();
    SYSLOG_LEVELS.iter().find(|(n, _)| *n == lower).map(|&(_, l)| l)
}

/// pfctl's `loglevel_to_string`: the `Debug:` word of `pfctl -si`.
pub fn syslog_level_name(level: u8) -> &'static str {
    SYSLOG_LEVELS.iter().find(|(_, l)| *l == level).map(|(n, _)| *n).unwrap_or("unknown")
}

/// OpenBSD's base system accounts (/etc/master.passwd), for `user NAME`.
/// pfctl asks the host's password database (uid_from_user); softnet uses
/// this fixed table so that a ruleset means the same on every host: the
/// ids only ever meet local sockets, which the router's traffic has none of.
const USERS: &[(&str, u32)] = &[
    ("root", 0),
    ("daemon", 1),
    ("operator", 2),
    ("bin", 3),
    ("build", 21),
    ("sshd", 27),
    ("www", 67),
    ("_pflogd", 74),
    ("nobody", 32767),
];

/// OpenBSD's base groups (/etc/group), for `group NAME`.
const GROUPS: &[(&str, u32)] = &[
    ("wheel", 0),
    ("daemon", 1),
    ("kmem", 2),
    ("sys", 3),
    ("tty", 4),
    ("operator", 5),
    ("bin", 7),
    ("wsrc", 9),
    ("users", 10),
    ("auth", 11),
    ("games", 13),
    ("staff", 20),
    ("wobj", 21),
    ("sshd", 27),
    ("guest", 31),
    ("utmp", 45),
    ("crontab", 66),
    ("www", 67),
    ("network", 69),
    ("authpf", 72),
    ("_pflogd", 74),
    ("dialer", 117),
    ("nogroup", 32766),
    ("nobody", 32767),
];

pub fn uid_by_name(name: &str) -> Option<u32> {
    USERS.iter().find(|(n, _)| *n == name).map(|&(_, id)| id)
}

pub fn gid_by_name(name: &str) -> Option<u32> {
    GROUPS.iter().find(|(n, _)| *n == name).map(|&(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_levels_are_read_and_named_as_pfctl_does() {
        for (given, level) in [("err", 3), ("ERR", 3), ("Warning", 4), ("panic", 0), ("7", 7), ("07", 7)] {
            assert_eq!(syslog_level_by_name(given), Some(level), "{given}");
        }
        // syslog's "none" and pf's old names are refused, as are numbers
        // beyond LOG_DEBUG.
        for bad in ["none", "misc", "loud", "urgent", "8", "3x", ""] {
            assert_eq!(syslog_level_by_name(bad), None, "{bad}");
        }
        let shown: Vec<&str> = (0..=7).map(syslog_level_name).collect();
        assert_eq!(shown, ["emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"]);
    }
}
