//! `Stack::create_loopback`: lo0 as OpenBSD attaches it at boot
//! (crate::loopback).

use super::{Stack, StackError};
use crate::iface::{If6Addr, IfAddr, Interface};
use crate::loopback::{loop_queues, LO0, LOMTU, LO_ADDR, LO_ADDR6, LO_GROUP, LO_LINK_LOCAL};
use crate::rtmsg::IfAnnounceWhat;
use softnet_wire::ethernet::MacAddr;
use std::sync::Arc;

impl Stack {
    /// Creates lo0 with one queue per worker: IFF_LOOPBACK, mtu 32768,
    /// group `lo`, `127.0.0.1/8`, `::1/128` and `fe80::1%lo0/64` (all
    /// preferred at once), up and running. Once per stack (a second call is
    /// `IfError::Exists`).
    pub fn create_loopback(&self) -> Result<Arc<Interface>, StackError> {
        let ifp = {
            let _c = self.control.lock();
            let cfg = crate::iface::InterfaceConfig {
                name: LO0.to_string(),
                mac: MacAddr([0; 6]),
                mtu: LOMTU,
                queues: loop_queues(self.config.workers),
            };
            let ifp = self.ifaces.create(cfg)?;
            ifp.mark_loopback();
            self.announce(&ifp, IfAnnounceWhat::Arrival);
            // in6_ifattach: ::1 (in6_ifattach_loopback), then fe80::1.
            self.add_address6_locked(&ifp, If6Addr::new(LO_ADDR6.0, LO_ADDR6.1))?;
            self.add_address6_locked(&ifp, If6Addr::new(LO_LINK_LOCAL.0, LO_LINK_LOCAL.1))?;
            ifp
        };
        self.add_group(LO0, LO_GROUP)?;
        self.add_address(LO0, IfAddr::new(LO_ADDR.0, LO_ADDR.1))?;
        self.set_up(LO0, true)?;
        Ok(ifp)
    }
}
