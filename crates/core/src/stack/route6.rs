//! Static IPv6 routes from the control plane (`route add -inet6`, the
//! configuration): built as route(8) asks for them, with KAME scopes
//! (`fe80::1%em0`) named by interface.

use super::{Stack, StackError};
use crate::iface::{IfError, IfIndex, WeakIf};
use crate::route::{prio, Route6, RouteFlags};
use std::net::Ipv6Addr;

/// Where a static IPv6 route goes. A gateway may carry the interface it is
/// scoped to (`fe80::1%em0`); a link-local one must.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteTarget6 {
    Gateway(Ipv6Addr, Option<String>),
    Interface(String),
    Reject,
    Blackhole,
}

impl Stack {
    /// The interface a `%name` scope names.
    fn scope_if(&self, name: &str) -> Result<WeakIf, StackError> {
        let ifs = self.ifaces.load();
        let ifp = ifs.by_name(name).ok_or_else(|| IfError::NoSuchInterface(name.to_string()))?;
        Ok(ifp.weak())
    }

    /// Builds a static IPv6 route as route(8) does: a gateway must be on a
    /// connected network, found by the table (for a scoped gateway, on its
    /// interface); `dest_scope` is the interface of a scoped destination
    /// (`fe80::%em0/64`).
    fn make_route6(
        &self,
        dest: Ipv6Addr,
        prefix_len: u8,
        dest_scope: Option<&str>,
        target: &RouteTarget6,
    ) -> Result<Route6, StackError> {
        let mut flags = RouteFlags::UP | RouteFlags::STATIC;
        if prefix_len == 128 {
            flags |= RouteFlags::HOST;
        }
        let mut ifp = match dest_scope {
            Some(n) => self.scope_if(n)?,
            None => WeakIf::default(),
        };
        let gateway = match target {
            RouteTarget6::Gateway(gw, scope) => {
                if let Some(n) = scope {
                    let s = self.scope_if(n)?;
                    if ifp.index != IfIndex::NONE && ifp != s {
                        // fe80::%em0/64 through fe80::1%em1.
                        return Err(crate::route::RouteError::NoScope.into());
                    }
                    ifp = s;
                }
                flags |= RouteFlags::GATEWAY;
                Some(*gw)
            }
            RouteTarget6::Interface(name) => {
                ifp = self.scope_if(name)?;
                None
            }
            RouteTarget6::Reject => {
                flags |= RouteFlags::REJECT;
                None
            }
            RouteTarget6::Blackhole => {
                flags |= RouteFlags::BLACKHOLE;
                None
            }
        };
        Ok(Route6 {
            dest,
            prefix_len,
            gateway,
            ifp,
            ifa: None,
            flags,
            mtu: 0,
            priority: prio::STATIC,
            origin: crate::route::RouteOrigin::Own,
            mpath: None,
        })
    }

    /// Adds a static IPv6 route (`route add -inet6`).
    pub fn add_route6(
        &self,
        rtable: u16,
        dest: Ipv6Addr,
        prefix_len: u8,
        dest_scope: Option<&str>,
        target: &RouteTarget6,
    ) -> Result<(), StackError> {
        let _c = self.control.lock();
        let r = self.make_route6(dest, prefix_len, dest_scope, target)?;
        self.routes.add(rtable, r)?;
        Ok(())
    }

    /// Changes an IPv6 route's gateway or flags (`route change -inet6`).
    pub fn change_route6(
        &self,
        rtable: u16,
        dest: Ipv6Addr,
        prefix_len: u8,
        dest_scope: Option<&str>,
        target: &RouteTarget6,
    ) -> Result<(), StackError> {
        let _c = self.control.lock();
        let r = self.make_route6(dest, prefix_len, dest_scope, target)?;
        self.routes.change(rtable, r)?;
        Ok(())
    }

    /// Deletes an IPv6 route (`route delete -inet6`); `dest_scope` names
    /// the interface of a scoped destination.
    pub fn delete_route6(
        &self,
        rtable: u16,
        dest: Ipv6Addr,
        prefix_len: u8,
        dest_scope: Option<&str>,
    ) -> Result<(), StackError> {
        let _c = self.control.lock();
        let scope = match dest_scope {
            Some(n) => self.scope_if(n)?.index,
            None => IfIndex::NONE,
        };
        self.routes.delete_scoped(rtable, dest, prefix_len, None, scope)?;
        Ok(())
    }

    /// The interface index a scope name means now (`None`: no such
    /// interface), for lookups of scoped destinations.
    pub fn scope_index(&self, name: &str) -> Option<IfIndex> {
        self.ifaces.load().by_name(name).map(|i| i.index())
    }
}
