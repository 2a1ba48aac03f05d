//! The ARP side of the admin commands (`arp -an`, `arp -n HOST`, `-s`, `-d`,
//! `-da`), over the stack's ARP table, worded as OpenBSD's arp(8).

use crate::proto::{ArpLifetime, ArpOp, Response};
use softnet_core::arp::{format_arp_an, ArpEntryKind, ArpError, ArpStaticKind};
use softnet_core::stack::Stack;
use softnet_wire::ethernet::MacAddr;

/// The table's errors say "arp: ..." themselves; the client adds the tool.
fn arp_error(e: &ArpError) -> String {
    let s = e.to_string();
    s.strip_prefix("arp: ").map(str::to_string).unwrap_or(s)
}

pub fn execute(stack: &Stack, op: &ArpOp) -> Response {
    match op {
        ArpOp::Show { host: None } => Response::Text(stack.arp_show()),
        ArpOp::Show { host: Some(ip) } => match stack.arp.entry(*ip) {
            Some(e) => Response::Text(format_arp_an(&[e], |i| stack.ifname(i), stack.clock.now())),
            None => Response::Error(format!("{ip} ({ip}) -- no entry")),
        },
        ArpOp::Set { host, mac, lifetime, publish } => {
            let kind = match lifetime {
                ArpLifetime::Temp => ArpStaticKind::Temp,
                ArpLifetime::Static => ArpStaticKind::Static,
                ArpLifetime::Permanent => ArpStaticKind::Permanent,
            };
            match stack.arp_set(*host, MacAddr(*mac), kind, *publish) {
                Ok(()) => Response::Text(String::new()),
                Err(e) => Response::Error(arp_error(&e)),
            }
        }
        ArpOp::Delete { host } => match stack.arp.delete(*host) {
            Ok(true) => Response::Text(format!("{host} ({host}) deleted\n")),
            // One of the router's own addresses: arp(8) spares it silently.
            Ok(false) => Response::Text(String::new()),
            Err(e) => Response::Error(arp_error(&e)),
        },
        ArpOp::DeleteAll => {
            let mut out = String::new();
            for e in stack.arp.entries().into_iter().filter(|e| e.kind != ArpEntryKind::Local) {
                if let Ok(true) = stack.arp.delete(e.ip) {
                    out.push_str(&format!("{} ({}) deleted\n", e.ip, e.ip));
                }
            }
            Response::Text(out)
        }
    }
}
