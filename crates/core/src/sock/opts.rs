//! Socket options of TCP sockets, and what an accepted connection
//! inherits from its listening socket.
//!
//! OpenBSD copies a listening socket's options into each connection it
//! accepts in two places: sonewconn (uipc_socket2.c) copies the socket
//! layer's (`so_options` such as SO_KEEPALIVE, `so_linger`, the buffers'
//! sizes through soreserve, their timeouts `sb_timeo_nsecs`, the owner),
//! and syn_cache_get (tcp_input.c) the TCP layer's flags
//! (`t_flags & (TF_NOPUSH|TF_NODELAY)`). Both run when the handshake
//! completes, so an option set on the listener applies to the
//! connections completed from then on. Here the TCP layer's options of a
//! listener are its `Config` (swapped whole when one changes, shared by
//! the connections made with it: `TcpListen::cfg`), and the socket
//! layer's its [`StreamOpts`], which `accept` gives the new stream.
//!
//! The window a SYN,ACK advertised, and its scale, cannot change after it
//! was sent: a connection takes its receive buffer size (and the options
//! the SYN,ACK negotiated) from the settings its SYN cache entry was made
//! with (`passive_config`).

use super::api::{TcpListener, TcpStream};
use super::tcp::TcpListen;
use super::{tcp_now, SockError};
use softnet_tcp::{Config, Keepalive};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// The largest socket buffer (OpenBSD's sb_max is 2 MB; Linux's
/// tcp_rmem/tcp_wmem maxima are 4–6 MB): a larger SO_RCVBUF or SO_SNDBUF
/// is refused with ENOBUFS, as sbreserve does.
pub const MAX_SOCKBUF: usize = 16 * 1024 * 1024;

/// The smallest socket buffer: a smaller size is raised to it (Linux's
/// SOCK_MIN_RCVBUF does the same), so that a segment always fits.
pub const MIN_SOCKBUF: usize = 2048;

/// The socket layer's options a listening socket hands to the
/// connections it accepts (sonewconn's `so_linger` and the socket
/// buffers' `sb_timeo_nsecs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamOpts {
    /// SO_LINGER: `Some(0)` resets the connection at close; `Some(t)`
    /// makes close wait up to `t` for the FIN to be acknowledged.
    pub linger: Option<Duration>,
    /// SO_RCVTIMEO.
    pub read_timeout: Option<Duration>,
    /// SO_SNDTIMEO.
    pub write_timeout: Option<Duration>,
}

/// A socket buffer size as sbreserve takes it.
fn sockbuf_size(n: usize) -> io::Result<usize> {
    if n == 0 || n > MAX_SOCKBUF {
        return Err(SockError::NoBufs.into());
    }
    Ok(n.max(MIN_SOCKBUF))
}

/// The settings of the connection a completed handshake makes
/// (syn_cache_get): the listener's as they are now (`now`), except what
/// the SYN,ACK already told the peer, which stays as it was sent
/// (`sent`, the SYN cache entry's): the receive buffer, whose size gave
/// the window and its scale, and whether window scaling, SACK and
/// timestamps were offered. The listener's own settings when they did
/// not change in between (no copy).
pub(crate) fn passive_config(now: Arc<Config>, sent: Option<&Arc<Config>>) -> Arc<Config> {
    match sent {
        Some(s)
            if !Arc::ptr_eq(s, &now)
                && (s.rx_buffer != now.rx_buffer
                    || s.window_scaling != now.window_scaling
                    || s.sack != now.sack
                    || s.timestamps != now.timestamps) =>
        {
            Arc::new(Config {
                rx_buffer: s.rx_buffer,
                window_scaling: s.window_scaling,
                sack: s.sack,
                timestamps: s.timestamps,
                ..(*now).clone()
            })
        }
        _ => now,
    }
}

impl TcpListen {
    /// The TCP settings of the connections it makes from now on.
    #[inline]
    pub(crate) fn config(&self) -> Arc<Config> {
        self.cfg.load_full()
    }

    /// Changes the settings of the connections it makes from now on.
    fn update_config(&self, f: impl Fn(&mut Config)) {
        self.cfg.rcu(|c| {
            let mut c = Config::clone(c);
            f(&mut c);
            c
        });
    }
}

impl TcpListener {
    /// TCP_NODELAY for the connections it accepts from now on
    /// (syn_cache_get copies the listener's TF_NODELAY).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.l.update_config(|c| c.nodelay = on);
        Ok(())
    }
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.l.config().nodelay)
    }

    /// TCP_NOPUSH for the connections it accepts from now on
    /// (syn_cache_get copies the listener's TF_NOPUSH).
    pub fn set_nopush(&self, on: bool) -> io::Result<()> {
        self.l.update_config(|c| c.nopush = on);
        Ok(())
    }
    pub fn nopush(&self) -> io::Result<bool> {
        Ok(self.l.config().nopush)
    }

    /// SO_KEEPALIVE (with its timing, `None` for off) for the
    /// connections it accepts from now on (sonewconn copies
    /// `so_options`): each probes its peer after `idle` without a
    /// segment, every `interval`, and is dropped after `count`
    /// unanswered probes.
    pub fn set_keepalive(&self, k: Option<Keepalive>) -> io::Result<()> {
        self.l.update_config(|c| c.keepalive = k);
        Ok(())
    }
    pub fn keepalive(&self) -> io::Result<Option<Keepalive>> {
        Ok(self.l.config().keepalive)
    }

    /// SO_RCVBUF: the receive buffer of the connections it accepts from
    /// now on (sonewconn's soreserve with the listener's `sb_hiwat`),
    /// which sets the window their SYN,ACK advertises and its scale.
    /// 0 or more than [`MAX_SOCKBUF`] is refused; less than
    /// [`MIN_SOCKBUF`] is raised to it.
    pub fn set_recv_buffer_size(&self, n: usize) -> io::Result<()> {
        let n = sockbuf_size(n)?;
        self.l.update_config(|c| c.rx_buffer = n);
        Ok(())
    }
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        Ok(self.l.config().rx_buffer)
    }

    /// SO_SNDBUF: the send buffer of the connections it accepts from now
    /// on; limits as `set_recv_buffer_size`.
    pub fn set_send_buffer_size(&self, n: usize) -> io::Result<()> {
        let n = sockbuf_size(n)?;
        self.l.update_config(|c| c.tx_buffer = n);
        Ok(())
    }
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        Ok(self.l.config().tx_buffer)
    }

    /// SO_LINGER for the connections it accepts from now on (sonewconn
    /// copies `so_linger`); see `TcpStream::set_linger`.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.l.opts.lock().linger = linger;
        Ok(())
    }
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        Ok(self.l.opts.lock().linger)
    }

    /// SO_RCVTIMEO of the streams it accepts from now on (sonewconn
    /// copies `so_rcv.sb_timeo_nsecs`).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.l.opts.lock().read_timeout = t;
        Ok(())
    }
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.l.opts.lock().read_timeout)
    }

    /// SO_SNDTIMEO of the streams it accepts from now on (sonewconn
    /// copies `so_snd.sb_timeo_nsecs`).
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.l.opts.lock().write_timeout = t;
        Ok(())
    }
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.l.opts.lock().write_timeout)
    }
}

impl TcpStream {
    /// TCP_NODELAY as set (or inherited from the listener).
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.conn.inner.lock().tcb.nodelay())
    }
    /// TCP_NOPUSH as set (or inherited from the listener).
    pub fn nopush(&self) -> io::Result<bool> {
        Ok(self.conn.inner.lock().tcb.nopush())
    }

    /// SO_KEEPALIVE with its timing (`None`: off): the connection probes
    /// its peer after `idle` without a segment, every `interval`, and is
    /// dropped (ETIMEDOUT) after `count` unanswered probes.
    pub fn set_keepalive(&self, k: Option<Keepalive>) -> io::Result<()> {
        let now = tcp_now(self.stack.clock.now());
        let mut i = self.conn.inner.lock();
        i.tcb.set_keepalive(k, now);
        self.stack.socks.schedule(&self.conn, i.tcb.poll_at());
        Ok(())
    }
    pub fn keepalive(&self) -> io::Result<Option<Keepalive>> {
        Ok(self.conn.inner.lock().tcb.config().keepalive)
    }

    /// SO_RCVBUF: the receive buffer's size (the listener's for an
    /// accepted connection, the stack's default for one opened here).
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        Ok(self.conn.inner.lock().tcb.config().rx_buffer)
    }
    /// SO_SNDBUF: the send buffer's size.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        Ok(self.conn.inner.lock().tcb.config().tx_buffer)
    }

    /// SO_LINGER, used when the stream is dropped (soclose): `None`
    /// (the default) closes in the background, the FIN after the data;
    /// `Some(Duration::ZERO)` resets the connection (tcp_disconnect's
    /// tcp_drop: a RST, unsent data thrown away); `Some(t)` closes and
    /// waits up to `t` until the peer acknowledged the FIN (or the
    /// connection is gone), unless the stream is non-blocking.
    pub fn set_linger(&mut self, linger: Option<Duration>) -> io::Result<()> {
        self.opts.linger = linger;
        Ok(())
    }
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        Ok(self.opts.linger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passive_connection_keeps_what_its_syn_ack_offered() {
        let sent = Arc::new(Config { rx_buffer: 64 * 1024, ..Config::default() });
        // Unchanged since the SYN: the listener's own settings.
        assert!(Arc::ptr_eq(&passive_config(sent.clone(), Some(&sent)), &sent));
        // Options that were not in the SYN,ACK come from now.
        let now = Arc::new(Config { nodelay: true, ..(*sent).clone() });
        assert!(Arc::ptr_eq(&passive_config(now.clone(), Some(&sent)), &now));
        // A receive buffer changed in between: the window sent stays.
        let now = Arc::new(Config { rx_buffer: 1 << 20, nodelay: true, sack: false, ..Config::default() });
        let c = passive_config(now.clone(), Some(&sent));
        assert_eq!((c.rx_buffer, c.sack, c.nodelay), (64 * 1024, true, true));
        // A cookie carries nothing: now's.
        assert!(Arc::ptr_eq(&passive_config(now.clone(), None), &now));
    }

    #[test]
    fn socket_buffer_sizes_are_bounded_as_sbreserve_does() {
        assert!(sockbuf_size(0).is_err());
        assert!(sockbuf_size(MAX_SOCKBUF + 1).is_err());
        assert_eq!(sockbuf_size(1).unwrap(), MIN_SOCKBUF);
        assert_eq!(sockbuf_size(MAX_SOCKBUF).unwrap(), MAX_SOCKBUF);
    }
}
