//! The admin commands' argument parsing.

use super::*;

fn p(tool: &str, line: &str) -> Result<Request, UsageError> {
    let args: Vec<String> = line.split_whitespace().map(String::from).collect();
    parse(tool, &args).map(|p| p.request)
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn dest(s: &str, l: u8) -> RouteDest {
    RouteDest { addr: ip(s), prefix_len: l }
}

fn add(d: RouteDest, g: RouteGateway) -> Request {
    Request::Route { rtable: 0, op: RouteOp::Add(RouteSpec { dest: d, gateway: g }) }
}

#[test]
fn route_add_forms_of_route8() {
    let gw = RouteGateway::Addr(ip("10.0.2.254"));
    assert_eq!(p("route", "add default 10.0.2.254").unwrap(), add(dest("0.0.0.0", 0), gw.clone()));
    let gw2 = RouteGateway::Addr(ip("10.0.2.2"));
    let net = dest("192.0.2.0", 24);
    for line in [
        "add -net 192.0.2.0/24 10.0.2.2",
        "add 192.0.2.0/24 10.0.2.2",
        "add -inet -net 192.0.2.0 -netmask 255.255.255.0 10.0.2.2",
        "add -net 192.0.2.0 10.0.2.2 255.255.255.0",
        "add -net 192.0.2.0 10.0.2.2",
        "add -net 192.0.2/24 10.0.2.2",
        "add -net 192.0.2.77/24 10.0.2.2",
    ] {
        assert_eq!(p("route", line).unwrap(), add(net, gw2.clone()), "{line}");
    }
    assert_eq!(p("route", "add -host 192.0.2.1 10.0.2.2").unwrap(), add(dest("192.0.2.1", 32), gw2.clone()));
    assert_eq!(p("route", "add 192.0.2.1 10.0.2.2").unwrap(), add(dest("192.0.2.1", 32), gw2.clone()));
    assert_eq!(p("route", "add 192.0.2.0/24 -reject").unwrap(), add(net, RouteGateway::Reject));
    assert_eq!(p("route", "add 192.0.2.0/24 127.0.0.1 -blackhole").unwrap(), add(net, RouteGateway::Blackhole));
    assert_eq!(p("route", "add 192.0.2.0/24 -ifp sn-r0").unwrap(), add(net, RouteGateway::Interface("sn-r0".into())));
    assert_eq!(p("route", "add 192.0.2.0/24 sn-r0 -iface").unwrap(), add(net, RouteGateway::Interface("sn-r0".into())));
    assert_eq!(
        p("route", "-T 3 change -net 10/8 10.0.2.2").unwrap(),
        Request::Route { rtable: 3, op: RouteOp::Change(RouteSpec { dest: dest("10.0.0.0", 8), gateway: gw2 }) }
    );
    let parsed = parse("route", &["-nq".into(), "add".into(), "default".into(), "10.0.2.254".into()]).unwrap();
    assert!(parsed.quiet);
    assert_eq!(
        p("route", "-T7 show").unwrap(),
        Request::Route { rtable: 7, op: RouteOp::Show { af: AddrFamily::All } }
    );
}

#[test]
fn route_delete_get_monitor() {
    assert_eq!(
        p("route", "delete -net 192.0.2.0/24").unwrap(),
        Request::Route { rtable: 0, op: RouteOp::Delete { dest: dest("192.0.2.0", 24), gateway: None } }
    );
    assert_eq!(
        p("route", "delete default 10.0.2.254").unwrap(),
        Request::Route { rtable: 0, op: RouteOp::Delete { dest: dest("0.0.0.0", 0), gateway: Some(ip("10.0.2.254")) } }
    );
    assert_eq!(
        p("route", "get 192.0.2.1").unwrap(),
        Request::Route { rtable: 0, op: RouteOp::Get { dest: dest("192.0.2.1", 32), exact: false } }
    );
    assert_eq!(
        p("route", "get -net 192.0.2.0/24").unwrap(),
        Request::Route { rtable: 0, op: RouteOp::Get { dest: dest("192.0.2.0", 24), exact: true } }
    );
    assert_eq!(p("route", "monitor").unwrap(), Request::Route { rtable: 0, op: RouteOp::Monitor { table: None } });
    assert_eq!(
        p("route", "-T 0 monitor").unwrap(),
        Request::Route { rtable: 0, op: RouteOp::Monitor { table: Some(0) } }
    );
}

#[test]
fn bad_route_lines_are_usage_errors() {
    for line in [
        "",
        "-x show",
        "-T",
        "-T 300 show",
        "frobnicate",
        "show extra",
        "add",
        "add default",
        "add default nothere",
        "add 192.0.2.0/33 10.0.2.2",
        "add 192.0.2.300 10.0.2.2",
        "add -host 192.0.2.0/24 10.0.2.2",
        "add -net -host 192.0.2.0/24 10.0.2.2",
        "add 192.0.2.0/24 -reject -blackhole",
        "add 192.0.2.0/24 10.0.2.2 -ifp sn-r0",
        "add 192.0.2.0/24 10.0.2.2 -bogus",
        "add 192.0.2.0/24 10.0.2.2 junk more",
        "add -netmask 255.0.255.0 10.0.0.0 10.0.2.2",
        "delete",
        "delete 192.0.2.0/24 10.0.2.2 x",
        "delete 192.0.2.0/24 -reject",
        "get",
        "get 1.2.3.4 5.6.7.8",
        "monitor now",
    ] {
        let e = p("route", line).expect_err(line);
        assert!(e.to_string().contains("usage: softnet route"), "{line}: {e}");
    }
}

#[test]
fn arp_forms() {
    assert_eq!(p("arp", "-an").unwrap(), Request::Arp(ArpOp::Show { host: None }));
    assert_eq!(p("arp", "-a -n").unwrap(), Request::Arp(ArpOp::Show { host: None }));
    assert_eq!(p("arp", "-n 10.0.1.2").unwrap(), Request::Arp(ArpOp::Show { host: Some(ip("10.0.1.2")) }));
    assert_eq!(
        p("arp", "-s 10.0.1.9 02:00:00:00:01:09").unwrap(),
        Request::Arp(ArpOp::Set {
            host: ip("10.0.1.9"),
            mac: [2, 0, 0, 0, 1, 9],
            lifetime: ArpLifetime::Static,
            publish: false
        })
    );
    assert_eq!(
        p("arp", "-s 10.0.1.9 2:0:0:0:1:9 temp pub").unwrap(),
        Request::Arp(ArpOp::Set {
            host: ip("10.0.1.9"),
            mac: [2, 0, 0, 0, 1, 9],
            lifetime: ArpLifetime::Temp,
            publish: true
        })
    );
    assert_eq!(p("arp", "-d 10.0.1.9").unwrap(), Request::Arp(ArpOp::Delete { host: ip("10.0.1.9") }));
    assert_eq!(p("arp", "-da").unwrap(), Request::Arp(ArpOp::DeleteAll));
    assert_eq!(p("arp", "-d -a").unwrap(), Request::Arp(ArpOp::DeleteAll));
    for line in [
        "",
        "-x",
        "-a 10.0.1.2",
        "-s 10.0.1.9",
        "-s 10.0.1.9 zz:00:00:00:00:00",
        "-s 10.0.1.9 02:00:00:00:01:09 temp permanent",
        "-s 10.0.1.9 02:00:00:00:01:09 forever",
        "-sd 10.0.1.9 02:00:00:00:01:09",
        "-d",
        "-d host.example",
        "-da 10.0.1.2",
        "10.0.1.2 -n",
        "1 2",
    ] {
        let e = p("arp", line).expect_err(line);
        assert!(e.to_string().contains("usage: softnet arp"), "{line}: {e}");
    }
}

#[test]
fn ifconfig_forms() {
    let show = |n: Option<&str>| Request::Ifconfig(IfconfigOp::Show { name: n.map(String::from) });
    assert_eq!(p("ifconfig", "").unwrap(), show(None));
    assert_eq!(p("ifconfig", "-a").unwrap(), show(None));
    assert_eq!(p("ifconfig", "sn-r0").unwrap(), show(Some("sn-r0")));
    let ch = |a: Vec<IfAction>| Request::Ifconfig(IfconfigOp::Change { name: "sn-r0".into(), actions: a });
    let a = InetAddr { addr: ip("10.0.9.1"), prefix_len: 24 };
    assert_eq!(p("ifconfig", "sn-r0 inet 10.0.9.1/24").unwrap(), ch(vec![IfAction::AddAddr(a)]));
    assert_eq!(p("ifconfig", "sn-r0 10.0.9.1/24 up").unwrap(), ch(vec![IfAction::AddAddr(a), IfAction::Up]));
    assert_eq!(p("ifconfig", "sn-r0 inet 10.0.9.1 netmask 255.255.255.0").unwrap(), ch(vec![IfAction::AddAddr(a)]));
    assert_eq!(p("ifconfig", "sn-r0 inet 10.0.9.1 prefixlen 24 alias").unwrap(), ch(vec![IfAction::AddAddr(a)]));
    assert_eq!(p("ifconfig", "sn-r0 inet 10.0.9.1/24 delete").unwrap(), ch(vec![IfAction::DeleteAddr(a.addr)]));
    assert_eq!(p("ifconfig", "sn-r0 inet 10.0.9.1 -alias").unwrap(), ch(vec![IfAction::DeleteAddr(a.addr)]));
    assert_eq!(p("ifconfig", "sn-r0 down").unwrap(), ch(vec![IfAction::Down]));
    assert_eq!(p("ifconfig", "sn-r0 destroy").unwrap(), ch(vec![IfAction::Destroy]));
    assert_eq!(
        p("ifconfig", "sn-r0 group lan -group dmz").unwrap(),
        ch(vec![IfAction::AddGroup("lan".into()), IfAction::DelGroup("dmz".into())])
    );
    for line in [
        "-x",
        "sn-r0 sideways",
        "sn-r0 inet",
        "sn-r0 inet 10.0.9.1",
        "sn-r0 inet 10.0.9.1/24 netmask 255.255.255.0",
        "sn-r0 inet 10.0.9.1 netmask 255.0.255.0",
        "sn-r0 inet 10.0.9.1/40",
        "sn-r0 up destroy",
        "sn-r0 destroy now",
        "sn-r0 create",
        "a/b up",
        "sn-r0 group",
        "sn-r0 group lan0",
        "sn-r0 -group egress",
    ] {
        let e = p("ifconfig", line).expect_err(line);
        assert!(e.to_string().contains("usage: softnet ifconfig"), "{line}: {e}");
    }
}

#[test]
fn netstat_forms() {
    assert_eq!(p("netstat", "-rn").unwrap(), Request::Netstat(NetstatOp::Routes { rtable: 0, af: AddrFamily::All }));
    assert_eq!(
        p("netstat", "-r -n -f inet").unwrap(),
        Request::Netstat(NetstatOp::Routes { rtable: 0, af: AddrFamily::Inet })
    );
    assert_eq!(
        p("netstat", "-rn -f inet6").unwrap(),
        Request::Netstat(NetstatOp::Routes { rtable: 0, af: AddrFamily::Inet6 })
    );
    assert_eq!(p("netstat", "-rn -f ipx").unwrap_err().msg.unwrap(), "ipx: unknown address family");
    assert_eq!(
        p("route", "show -inet6").unwrap(),
        Request::Route { rtable: 0, op: RouteOp::Show { af: AddrFamily::Inet6 } }
    );
    assert_eq!(p("netstat", "-rnT2").unwrap(), Request::Netstat(NetstatOp::Routes { rtable: 2, af: AddrFamily::All }));
    assert_eq!(
        p("netstat", "-rn -T 2").unwrap(),
        Request::Netstat(NetstatOp::Routes { rtable: 2, af: AddrFamily::All })
    );
    assert_eq!(p("netstat", "-s").unwrap(), Request::Netstat(NetstatOp::Stats));
    assert_eq!(
        p("netstat", "-s -p tcp").unwrap(),
        Request::Netstat(NetstatOp::ProtoStats { proto: crate::proto::SockProto::Tcp })
    );
    assert_eq!(p("netstat", "-in").unwrap(), Request::Netstat(NetstatOp::Interfaces));
    assert_eq!(p("netstat", "-m").unwrap(), Request::Netstat(NetstatOp::Buffers));
    let socks = |all, af, proto| Request::Netstat(NetstatOp::Sockets { all, af, proto });
    assert_eq!(p("netstat", "").unwrap(), socks(false, AddrFamily::All, None));
    assert_eq!(p("netstat", "-an").unwrap(), socks(true, AddrFamily::All, None));
    assert_eq!(p("netstat", "-an -p tcp").unwrap(), socks(true, AddrFamily::All, Some(SockProto::Tcp)));
    assert_eq!(p("netstat", "-n -f inet6 -p udp").unwrap(), socks(false, AddrFamily::Inet6, Some(SockProto::Udp)));
    for line in [
        "-rs",
        "-x",
        "-r extra",
        "-s -T 1",
        "-f ipx -r",
        "-rn -f",
        "-rT",
        "-ra",
        "-sa",
        "-r -p tcp",
        "-p ipx",
        "-p",
        "-ms",
        "-am",
    ] {
        let e = p("netstat", line).expect_err(line);
        assert!(e.to_string().contains("usage: softnet netstat"), "{line}: {e}");
    }
}

#[test]
fn no_daemon_is_a_clear_error() {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let path = std::env::temp_dir().join(format!("softnet-nodaemon-{}.sock", std::process::id()));
    let code = run("netstat", &path, &["-rn".to_string()], &mut out, &mut err);
    assert_eq!(code, 1);
    let err = String::from_utf8(err).unwrap();
    assert_eq!(err, format!("softnet: cannot connect to {}: No such file or directory\n", path.display()));
}

#[test]
fn usage_goes_to_stderr_with_exit_1() {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run("route", Path::new("/nonexistent"), &["bogus".to_string()], &mut out, &mut err);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    let err = String::from_utf8(err).unwrap();
    assert!(err.starts_with("softnet route: unknown command bogus\nusage: softnet route"), "{err}");
}
