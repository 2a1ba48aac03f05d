//! The daemon's side of ndp(8) (`ndp -an`, `ndp -n HOST`, `-s`, `-d`,
//! `-c`) over the stack's neighbor cache, worded as OpenBSD's ndp.

use crate::proto::{NdpHost, NdpOp, Response};
use softnet_core::iface::IfIndex;
use softnet_core::nd6::format_ndp_an;
use softnet_core::stack::Stack;
use softnet_wire::ethernet::MacAddr;

/// The interface a host's scope names; `Err` with ndp's words when there
/// is no such interface.
fn scope(stack: &Stack, h: &NdpHost) -> Result<Option<IfIndex>, String> {
    match &h.scope {
        None => Ok(None),
        Some(n) => match stack.ifaces.load().by_name(n) {
            Some(i) => Ok(Some(i.index())),
            None => Err(format!("{h}: no address associated with name")),
        },
    }
}

pub fn execute(stack: &Stack, op: &NdpOp) -> Response {
    let now = stack.clock.now();
    match op {
        NdpOp::Show { host: None } => Response::Text(stack.ndp_show()),
        NdpOp::Show { host: Some(h) } => {
            let entries = match scope(stack, h) {
                Ok(s) => stack.nd6.entry(h.addr, s),
                Err(e) => return Response::Error(e),
            };
            if entries.is_empty() {
                return Response::Error(format!("{h} ({h}) -- no entry"));
            }
            Response::Text(format_ndp_an(&entries, |i| stack.ifname(i), now))
        }
        NdpOp::Set { host, mac, temp, proxy } => {
            match stack.ndp_set(host.addr, host.scope.as_deref(), MacAddr(*mac), *temp, *proxy) {
                Ok(()) => Response::Text(String::new()),
                Err(e) => Response::Error(e.to_string()),
            }
        }
        NdpOp::Delete { host } => {
            let s = match scope(stack, host) {
                Ok(s) => s,
                Err(e) => return Response::Error(e),
            };
            match stack.nd6.delete(host.addr, s) {
                Ok(true) => Response::Text(format!("{host} ({host}) deleted\n")),
                // One of the router's own addresses: ndp(8) spares it silently.
                Ok(false) => Response::Text(String::new()),
                Err(e) => Response::Error(e.to_string()),
            }
        }
        NdpOp::Clear => {
            let mut out = String::new();
            for e in stack.nd6.delete_dynamic() {
                let ifn = stack.ifname(e.ifindex).unwrap_or_else(|| "?".into());
                let name = softnet_core::nd6::neighbor_name(&e, &ifn);
                out.push_str(&format!("{name} ({name}) deleted\n"));
            }
            Response::Text(out)
        }
    }
}
