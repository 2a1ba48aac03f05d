//! The worker's side of pf's `divert-to`: a connection pf diverted
//! (`mflags::PF_DIVERTED`) that no PCB has yet goes to the socket
//! listening on the divert address, which then sees the original
//! destination as its local address (tcp_input's in_pcblookup_listen with
//! pf's divert key); a diverted datagram goes to the socket bound to its
//! destination or else to the divert address, which reads the original
//! destination beside it (udp_input, IP_RECVDSTADDR).

use super::*;
use crate::sock::udp::UdpPcb;
use crate::sock::TcpListen;
use std::net::SocketAddr;

impl WorkerState {
    /// The listener a diverted segment is for: the filter names the
    /// divert address (`divert-to`; none for `divert-reply`, whose packets
    /// only a connection takes).
    #[cold]
    pub(super) fn divert_listener(&self, cx: &Ctx, p: &PacketBuf) -> Option<Arc<TcpListen>> {
        let to = cx.filter?.0.divert_to(&p.meta)?;
        cx.stack.socks.tcp_divert_listener(to)
    }

    /// The socket a diverted datagram from `remote` to `local` is for
    /// (`Sockets::udp_divert_lookup`).
    #[cold]
    pub(super) fn divert_udp(
        &self,
        cx: &Ctx,
        p: &PacketBuf,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<Arc<UdpPcb>> {
        let to = cx.filter.and_then(|f| f.0.divert_to(&p.meta));
        cx.stack.socks.udp_divert_lookup(local, remote, to)
    }
}
