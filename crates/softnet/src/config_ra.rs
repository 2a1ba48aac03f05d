//! An interface's router advertisements in the TOML configuration: the
//! `[interface.ra]` table (or `ra = { … }`), rad.conf(5)'s settings with
//! its names in snake case and its defaults:
//!
//! ```toml
//! [[interface]]
//! name = "sn-r0"
//! addr = ["10.0.1.1/24", "2001:db8:1::1/64"]
//! [interface.ra]                        # `ra = {}`: all defaults
//! default_router = true                 # default router yes|no
//! router_lifetime = 1800                # seconds: 0, or max_interval to 9000
//! router_preference = "medium"          # high | medium | low
//! hop_limit = 0                         # 0: unspecified
//! managed_address_configuration = false # M flag
//! other_configuration = false           # O flag
//! reachable_time = 0                    # milliseconds, 0: unspecified
//! retrans_timer = 0                     # milliseconds, 0: unspecified
//! mtu = 0                               # MTU option; 0: none
//! source_link_layer_address = true
//! min_interval = 200                    # MinRtrAdvInterval (not in rad)
//! max_interval = 600                    # MaxRtrAdvInterval (not in rad)
//! auto_prefix = true                    # false: rad's `no auto prefix`; or { valid_lifetime = …, … }
//! dns = { lifetime = 1800, nameserver = ["2001:db8::53"], search = ["example.org"] }
//! [[interface.ra.prefix]]
//! prefix = "2001:db8:2::/64"            # without a length: /64
//! valid_lifetime = 5400
//! preferred_lifetime = 2700
//! on_link = true
//! autonomous_address_configuration = true
//! ```

use crate::config::{ConfigError, Ctx};
use serde::Deserialize;
use softnet_core::nd6::rtadv::{DnsConf, PrefixConf, RaConfig, RaPrefix};
use softnet_wire::ndp::RouterPreference;
use std::net::Ipv6Addr;
use std::time::Duration;
use toml::Spanned;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRa {
    default_router: Option<bool>,
    router_lifetime: Option<Spanned<i64>>,
    router_preference: Option<Spanned<String>>,
    hop_limit: Option<Spanned<i64>>,
    managed_address_configuration: Option<bool>,
    other_configuration: Option<bool>,
    reachable_time: Option<Spanned<i64>>,
    retrans_timer: Option<Spanned<i64>>,
    mtu: Option<Spanned<i64>>,
    source_link_layer_address: Option<bool>,
    min_interval: Option<Spanned<i64>>,
    max_interval: Option<Spanned<i64>>,
    auto_prefix: Option<Spanned<toml::Value>>,
    #[serde(default)]
    prefix: Vec<Spanned<RawPrefix>>,
    dns: Option<Spanned<RawDns>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawPrefixOpts {
    valid_lifetime: Option<i64>,
    preferred_lifetime: Option<i64>,
    on_link: Option<bool>,
    autonomous_address_configuration: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawPrefix {
    prefix: String,
    valid_lifetime: Option<i64>,
    preferred_lifetime: Option<i64>,
    on_link: Option<bool>,
    autonomous_address_configuration: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawDns {
    lifetime: Option<Spanned<i64>>,
    #[serde(default)]
    nameserver: Vec<Spanned<String>>,
    #[serde(default)]
    search: Vec<Spanned<String>>,
}

fn prefix_conf(o: &RawPrefixOpts) -> Result<PrefixConf, String> {
    let d = PrefixConf::default();
    let lifetime = |v: Option<i64>, what: &str, def: u32| match v {
        None => Ok(def),
        Some(x) if (0..=u32::MAX as i64).contains(&x) => Ok(x as u32),
        Some(x) => Err(format!("{what} {x} out of range 0-4294967295")),
    };
    Ok(PrefixConf {
        valid_lifetime: lifetime(o.valid_lifetime, "valid lifetime", d.valid_lifetime)?,
        preferred_lifetime: lifetime(o.preferred_lifetime, "preferred lifetime", d.preferred_lifetime)?,
        on_link: o.on_link.unwrap_or(d.on_link),
        autonomous: o.autonomous_address_configuration.unwrap_or(d.autonomous),
    })
}

/// `ra` of interface `name` (its configured MTU bounds the MTU option),
/// checked as the stack will check it. `span`: the interface's entry (an
/// `ra` table made implicitly by `[[interface.ra.prefix]]` has no place
/// of its own).
pub(crate) fn ra_conf(
    cx: &Ctx,
    name: &str,
    if_mtu: Option<u32>,
    r: &RawRa,
    span: std::ops::Range<usize>,
) -> Result<RaConfig, ConfigError> {
    let at = |span: std::ops::Range<usize>, msg: String| cx.error(span, format!("interface {name:?}: ra: {msg}"));
    let int = |v: &Option<Spanned<i64>>, what: &str, max: i64, def: i64| -> Result<i64, ConfigError> {
        match v {
            None => Ok(def),
            Some(x) if (0..=max).contains(x.get_ref()) => Ok(*x.get_ref()),
            Some(x) => Err(at(x.span(), format!("{what} {} out of range 0-{max}", x.get_ref()))),
        }
    };
    let d = RaConfig::default();
    let preference = match &r.router_preference {
        None => RouterPreference::Medium,
        Some(p) => match p.get_ref().as_str() {
            "high" => RouterPreference::High,
            "medium" => RouterPreference::Medium,
            "low" => RouterPreference::Low,
            other => return Err(at(p.span(), format!("router preference {other:?}: expected high, medium or low"))),
        },
    };
    let mtu = int(&r.mtu, "mtu", 65535, 0)? as u32;
    if let Some(if_mtu) = if_mtu.filter(|m| mtu > *m) {
        let span = r.mtu.as_ref().map(|m| m.span()).unwrap_or(span.clone());
        return Err(at(span, format!("mtu {mtu} above the interface's mtu {if_mtu}")));
    }
    let auto_prefix = match &r.auto_prefix {
        None => Some(PrefixConf::default()),
        Some(v) => match v.get_ref() {
            toml::Value::Boolean(true) => Some(PrefixConf::default()),
            toml::Value::Boolean(false) => None,
            toml::Value::Table(t) => {
                let o: RawPrefixOpts = toml::Value::Table(t.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| at(v.span(), format!("auto_prefix: {}", e.message().trim())))?;
                Some(prefix_conf(&o).map_err(|e| at(v.span(), format!("auto_prefix: {e}")))?)
            }
            _ => return Err(at(v.span(), "auto_prefix: expected true, false or a table of prefix options".into())),
        },
    };
    let mut prefixes: Vec<RaPrefix> = Vec::new();
    for p in &r.prefix {
        let rp = p.get_ref();
        let s = &rp.prefix;
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => match l.parse::<u8>() {
                Ok(l) if l <= 128 => (a, l),
                _ => return Err(at(p.span(), format!("prefix {s:?}: bad prefix length"))),
            },
            None => (s.as_str(), 64),
        };
        let addr: Ipv6Addr = a.parse().map_err(|_| at(p.span(), format!("prefix {s:?}: bad IPv6 address")))?;
        let opts = RawPrefixOpts {
            valid_lifetime: rp.valid_lifetime,
            preferred_lifetime: rp.preferred_lifetime,
            on_link: rp.on_link,
            autonomous_address_configuration: rp.autonomous_address_configuration,
        };
        let conf = prefix_conf(&opts).map_err(|e| at(p.span(), format!("prefix {s}: {e}")))?;
        let prefix = Ipv6Addr::from(u128::from(addr) & softnet_core::route::prefix_mask6(len));
        if prefixes.iter().any(|x| x.prefix == prefix && x.prefix_len == len) {
            return Err(at(p.span(), format!("prefix {prefix}/{len} defined twice")));
        }
        prefixes.push(RaPrefix { prefix, prefix_len: len, conf });
    }
    let dns = match &r.dns {
        None => DnsConf::default(),
        Some(dn) => {
            let dr = dn.get_ref();
            let lifetime = int(&dr.lifetime, "dns lifetime", u32::MAX as i64, DnsConf::default().lifetime as i64)?;
            let mut nameservers = Vec::new();
            for n in &dr.nameserver {
                let a: Ipv6Addr = n
                    .get_ref()
                    .parse()
                    .map_err(|_| at(n.span(), format!("dns nameserver {:?}: bad IPv6 address", n.get_ref())))?;
                nameservers.push(a);
            }
            for s in &dr.search {
                if softnet_core::nd6::rtadv::encode_search(std::slice::from_ref(s.get_ref())).is_none() {
                    return Err(at(s.span(), format!("dns search {:?}: not a domain name", s.get_ref())));
                }
            }
            DnsConf {
                lifetime: lifetime as u32,
                nameservers,
                search: dr.search.iter().map(|s| s.get_ref().clone()).collect(),
            }
        }
    };
    let cfg = RaConfig {
        default_router: r.default_router.unwrap_or(d.default_router),
        router_lifetime: int(&r.router_lifetime, "router lifetime", 9000, d.router_lifetime as i64)? as u16,
        preference,
        hop_limit: int(&r.hop_limit, "hop limit", 255, d.hop_limit as i64)? as u8,
        managed: r.managed_address_configuration.unwrap_or(d.managed),
        other: r.other_configuration.unwrap_or(d.other),
        reachable_time: int(&r.reachable_time, "reachable time", 3_600_000, 0)? as u32,
        retrans_timer: int(&r.retrans_timer, "retrans timer", u32::MAX as i64, 0)? as u32,
        mtu,
        source_lladdr: r.source_link_layer_address.unwrap_or(d.source_lladdr),
        min_interval: Duration::from_secs(int(&r.min_interval, "min interval", 1800, 200)? as u64),
        max_interval: Duration::from_secs(int(&r.max_interval, "max interval", 1800, 600)? as u64),
        auto_prefix,
        prefixes,
        dns,
    };
    // An explicit max_interval alone brings the RFC's default min along
    // (0.33 x max), as router_lifetime's default does not (rad's 1800).
    let cfg = match (&r.min_interval, &r.max_interval) {
        (None, Some(m)) => RaConfig { min_interval: Duration::from_secs((*m.get_ref() as u64 / 3).max(3)), ..cfg },
        _ => cfg,
    };
    cfg.check().map_err(|e| at(span.clone(), e))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use softnet_core::nd6::rtadv::{DnsConf, PrefixConf, RaConfig, RaPrefix};
    use softnet_wire::ndp::RouterPreference;
    use std::path::Path;
    use std::time::Duration;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("softnet.toml")).map_err(|e| e.to_string())
    }

    const HEAD: &str = "[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"fd00:1::1/64\"]\n";

    #[test]
    fn an_empty_ra_table_is_rads_defaults_and_no_table_is_no_advertisements() {
        let c = parse(HEAD).unwrap();
        assert_eq!(c.interfaces[0].ra, None);
        let c = parse(&format!("{HEAD}ra = {{}}\n")).unwrap();
        assert_eq!(c.interfaces[0].ra, Some(RaConfig::default()));
        let c = parse(&format!("{HEAD}[interface.ra]\n")).unwrap();
        assert_eq!(c.interfaces[0].ra, Some(RaConfig::default()));
    }

    #[test]
    fn every_rad_conf_setting_is_read() {
        let src = format!(
            "{HEAD}mtu = 1500\n[interface.ra]\ndefault_router = false\nrouter_lifetime = 0\nrouter_preference = \"low\"\n\
             hop_limit = 64\nmanaged_address_configuration = true\nother_configuration = true\nreachable_time = 30000\n\
             retrans_timer = 1000\nmtu = 1480\nsource_link_layer_address = false\nmax_interval = 30\n\
             auto_prefix = {{ valid_lifetime = 600, preferred_lifetime = 300 }}\n\
             dns = {{ lifetime = 900, nameserver = [\"2001:db8::53\"], search = [\"example.org\"] }}\n\
             [[interface.ra.prefix]]\nprefix = \"2001:db8:7::1\"\non_link = false\nautonomous_address_configuration = false\n"
        );
        let c = parse(&src).unwrap();
        let want = RaConfig {
            default_router: false,
            router_lifetime: 0,
            preference: RouterPreference::Low,
            hop_limit: 64,
            managed: true,
            other: true,
            reachable_time: 30000,
            retrans_timer: 1000,
            mtu: 1480,
            source_lladdr: false,
            min_interval: Duration::from_secs(10),
            max_interval: Duration::from_secs(30),
            auto_prefix: Some(PrefixConf { valid_lifetime: 600, preferred_lifetime: 300, ..PrefixConf::default() }),
            prefixes: vec![RaPrefix {
                prefix: "2001:db8:7::".parse().unwrap(),
                prefix_len: 64,
                conf: PrefixConf { on_link: false, autonomous: false, ..PrefixConf::default() },
            }],
            dns: DnsConf {
                lifetime: 900,
                nameservers: vec!["2001:db8::53".parse().unwrap()],
                search: vec!["example.org".into()],
            },
        };
        assert_eq!(c.interfaces[0].ra, Some(want));
        let c = parse(&format!("{HEAD}ra = {{ auto_prefix = false }}\n")).unwrap();
        assert_eq!(c.interfaces[0].ra.as_ref().unwrap().auto_prefix, None);
    }

    #[test]
    fn bad_settings_are_errors_with_lines() {
        let cases = [
            ("[interface.ra]\nbogus = 1\n", "line 6: unknown field `bogus`"),
            ("[interface.ra]\nrouter_lifetime = 100\n", "line 1: interface \"a\": ra: router lifetime 100 out of range: 0 or 600-9000"),
            ("[interface.ra]\nrouter_lifetime = 90000\n", "line 6: interface \"a\": ra: router lifetime 90000 out of range 0-9000"),
            ("[interface.ra]\nrouter_preference = \"top\"\n", "line 6: interface \"a\": ra: router preference \"top\": expected high, medium or low"),
            ("[interface.ra]\nhop_limit = 256\n", "hop limit 256 out of range 0-255"),
            ("mtu = 1400\n[interface.ra]\nmtu = 1500\n", "line 7: interface \"a\": ra: mtu 1500 above the interface's mtu 1400"),
            ("[interface.ra]\nmtu = 1200\n", "mtu 1200 below the IPv6 minimum 1280"),
            ("[interface.ra]\nmax_interval = 2\n", "max interval 2 out of range 4-1800"),
            ("[interface.ra]\nmin_interval = 500\n", "min interval 500 out of range 3-450"),
            ("[interface.ra]\nauto_prefix = 3\n", "line 6: interface \"a\": ra: auto_prefix: expected true, false or a table"),
            ("[interface.ra]\nauto_prefix = { valid = 3 }\n", "auto_prefix: unknown field `valid`"),
            ("[interface.ra]\nauto_prefix = { valid_lifetime = 10 }\n", "preferred lifetime 2700 above valid lifetime 10"),
            ("[[interface.ra.prefix]]\nprefix = \"2001:db8::/129\"\n", "line 5: interface \"a\": ra: prefix \"2001:db8::/129\": bad prefix length"),
            ("[[interface.ra.prefix]]\nprefix = \"2001:db8::g\"\n", "bad IPv6 address"),
            ("[[interface.ra.prefix]]\nprefix = \"fe80::\"\n", "prefix fe80::/64 is not a unicast prefix"),
            ("[[interface.ra.prefix]]\nprefix = \"2001:db8::/64\"\n[[interface.ra.prefix]]\nprefix = \"2001:db8::1\"\n", "line 7: interface \"a\": ra: prefix 2001:db8::/64 defined twice"),
            ("[[interface.ra.prefix]]\nprefix = \"2001:db8::/64\"\nvalid_lifetime = -1\n", "valid lifetime -1 out of range"),
            ("[interface.ra]\ndns = { nameserver = [\"10.0.0.1\"] }\n", "dns nameserver \"10.0.0.1\": bad IPv6 address"),
            ("[interface.ra]\ndns = { search = [\"a..org\"] }\n", "dns search \"a..org\": not a domain name"),
        ];
        for (tail, want) in cases {
            let src = format!("{HEAD}{tail}");
            let e = parse(&src).unwrap_err();
            assert!(e.contains(want), "{tail:?}: got {e:?}, want {want:?}");
        }
    }
}
