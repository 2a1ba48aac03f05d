//! Initial sequence numbers as RFC 6528 §3: ISN = M + F(localip,
//! localport, remoteip, remoteport, secretkey), M a 4 µs timer, F SipHash
//! keyed with 128 random bits drawn once (from the injected random source).

use crate::{Instant, Seq};
use core::hash::Hasher;
use siphasher::sip::SipHasher24;
use std::net::SocketAddr;

/// The RFC 6528 generator; one per stack (or per worker), keyed at start.
pub struct IsnGen {
    k0: u64,
    k1: u64,
}

impl IsnGen {
    /// `random` supplies 4 words of key.
    pub fn new(mut random: impl FnMut() -> u32) -> IsnGen {
        let mut w = || u64::from(random()) << 32 | u64::from(random());
        IsnGen { k0: w(), k1: w() }
    }

    pub fn isn(&self, local: SocketAddr, remote: SocketAddr, now: Instant) -> Seq {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        for a in [local, remote] {
            match a {
                SocketAddr::V4(a) => h.write(&a.ip().octets()),
                SocketAddr::V6(a) => h.write(&a.ip().octets()),
            }
            h.write(&a.port().to_be_bytes());
        }
        let f = h.finish() as u32;
        let m = (now.as_nanos() / 4_000) as u32;
        Seq(m.wrapping_add(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isn_depends_on_tuple_key_and_advances_every_4us() {
        let mut n = 0u32;
        let g = IsnGen::new(|| {
            n += 1;
            n
        });
        let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let c: SocketAddr = "10.0.0.2:81".parse().unwrap();
        let t0 = Instant::from_nanos(1_000_000);
        let i0 = g.isn(a, b, t0);
        assert_eq!(g.isn(a, b, Instant::from_nanos(1_000_000 + 4_000)), i0 + 1);
        assert_eq!(g.isn(a, b, Instant::from_nanos(1_000_000 + 400_000)), i0 + 100);
        assert_ne!(g.isn(a, c, t0), i0);
        let g2 = IsnGen::new(|| 7);
        assert_ne!(g2.isn(a, b, t0), i0, "another key, another offset");
    }
}
