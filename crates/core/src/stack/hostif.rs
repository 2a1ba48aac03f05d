//! Host interfaces from the control plane (`crate::hostif`): attaching an
//! interface's twin and telling the stack which groups the host joined.

use super::{Stack, StackError};
use crate::hostif::HostPort;
use crate::link::LinkQueue;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

impl Stack {
    /// Gives interface `name` its host twin `host` over `queues`. An
    /// interface has at most one, and two interfaces never share a name
    /// for theirs.
    pub fn attach_host(&self, name: &str, host: &str, queues: Vec<Box<dyn LinkQueue>>) -> Result<(), StackError> {
        let _c = self.control.lock();
        let ifp = self.find(name)?;
        let err = |why| StackError::Host(name.to_string(), host.to_string(), why);
        if host.is_empty() || host.len() > 15 || host.contains('/') || host.chars().any(char::is_whitespace) {
            return Err(err("not an interface name (1-15 characters, no '/' or whitespace)"));
        }
        if self.ifaces.load().iter().any(|i| i.host().is_some_and(|h| h.name() == host)) {
            return Err(err("another interface has a host interface of that name"));
        }
        let port = HostPort::new(host, queues).ok_or_else(|| err("no link queues"))?;
        ifp.attach_host(Arc::new(port)).map_err(|_| err("the interface has a host interface already"))
    }

    /// The interface whose host twin is called `host` in the host (route
    /// sync skips the host's connected and local routes on it: they are
    /// the interface's own).
    pub fn host_owner(&self, host: &str) -> Option<Arc<crate::iface::Interface>> {
        self.ifaces.load().iter().find(|i| i.host().is_some_and(|h| h.name() == host)).cloned()
    }

    /// The multicast groups the host joined on `name`'s twin (from the
    /// host's membership lists); what is sent to them is punted.
    pub fn set_host_groups(&self, name: &str, v4: Vec<Ipv4Addr>, v6: Vec<Ipv6Addr>) -> Result<bool, StackError> {
        let ifp = self.find(name)?;
        let host = ifp.host().ok_or_else(|| StackError::Host(name.to_string(), String::new(), "no host interface"))?;
        Ok(host.set_groups(v4, v6))
    }
}
