//! Initial sequence numbers (RFC 6528) and per-connection timestamp offsets.
//!
//! ISN = M + F(localip, localport, remoteip, remoteport, secretkey), where M
//! is a 4 µs clock (RFC 6528 §3, RFC 9293 §3.4.1) and F is SipHash-2-4 under
//! a random key, truncated to 32 bits. An off-path attacker cannot predict F,
//! and successive connections on one 4-tuple still get increasing ISNs.

use std::hash::Hasher;
use std::net::SocketAddrV4;

use siphasher::sip::SipHasher24;

use crate::time::Instant;
use crate::wire::SeqNumber;

#[derive(Clone)]
pub struct IsnGenerator {
    key: [u8; 16],
}

impl core::fmt::Debug for IsnGenerator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IsnGenerator { key: <secret> }")
    }
}

fn hash_tuple(key: &[u8; 16], domain: u8, local: SocketAddrV4, remote: SocketAddrV4) -> u64 {
    let mut h = SipHasher24::new_with_key(key);
    h.write_u8(domain);
    h.write(&local.ip().octets());
    h.write_u16(local.port());
    h.write(&remote.ip().octets());
    h.write_u16(remote.port());
    h.finish()
}

impl IsnGenerator {
    pub fn new(key: [u8; 16]) -> Self {
        IsnGenerator { key }
    }

    /// RFC 6528 §3.
    pub fn isn(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> SeqNumber {
        let m = (now.as_micros() / 4) as u32;
        let f = hash_tuple(&self.key, 0, local, remote) as u32;
        SeqNumber(m.wrapping_add(f))
    }

    /// A keyed per-connection offset for TSval, so timestamps don't reveal
    /// uptime (as Linux does since 4.10).
    pub fn ts_offset(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        hash_tuple(&self.key, 1, local, remote) as u32
    }

    /// RFC 6056 §3.3.4 (algorithm 4, double-hash port selection): F, a
    /// destination's keyed offset into the ephemeral range, from our
    /// address and the remote address and port; and G, which of
    /// `table_len` counters moves that destination's search on. Distinct
    /// domains of one key, so neither predicts the other.
    pub fn port_hashes(&self, local: std::net::Ipv4Addr, remote: SocketAddrV4, table_len: usize) -> (u32, usize) {
        let local = SocketAddrV4::new(local, 0);
        let f = hash_tuple(&self.key, 2, local, remote) as u32;
        let g = hash_tuple(&self.key, 3, local, remote) as usize % table_len.max(1);
        (f, g)
    }

    /// A keyed hash of a 4-tuple, for choosing the shard that owns it
    /// (`stack::Shard::owner`): its own domain of the key.
    pub fn owner_hash(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        hash_tuple(&self.key, 4, local, remote) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80);
    const B: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000);

    #[test]
    fn keyed_per_tuple_and_clocked() {
        let g = IsnGenerator::new([1; 16]);
        let t = Instant::from_secs(5);
        assert_eq!(g.isn(t, A, B), g.isn(t, A, B));
        assert_ne!(g.isn(t, A, B), g.isn(t, B, A));
        assert_ne!(g.isn(t, A, B), IsnGenerator::new([2; 16]).isn(t, A, B));
        // One tick per 4 µs.
        let later = g.isn(t + crate::time::Duration::from_micros(400), A, B);
        assert_eq!(later.0.wrapping_sub(g.isn(t, A, B).0), 100);
        assert_ne!(g.ts_offset(A, B), g.isn(Instant::ZERO, A, B).0);
    }
}
