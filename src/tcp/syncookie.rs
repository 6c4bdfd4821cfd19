//! SYN cookies (RFC 4987 §3.6), in the scheme Linux uses.
//!
//! ISS = H1(tuple) + peer ISN + (count << 24) + ((H2(tuple, count, peer ISN) + mss_index) mod 2^24)
//! where `count` advances every 64 s. The final ACK carries ISS + 1 and the
//! peer's ISN + 1, so the server recovers `count` from the top 8 bits, checks
//! it is at most two periods old, and recovers the MSS index from the low 24.
//! H1 and H2 are SipHash-2-4 under two keys derived from a random secret.
//! Unlike Linux, H2 also covers the peer's ISN, so an ACK with the right
//! cookie but a different SEG.SEQ fails too (a forgery passes with
//! probability 8/2^24, one per MSS table entry).
//!
//! The peer's window scale and SACK-permitted cannot fit in the cookie; when
//! the peer uses timestamps they ride in the low 6 bits of our TSval instead,
//! and come back in the TSecr of the final ACK (Linux's
//! cookie_init_timestamp). Without timestamps neither is offered.

use std::hash::Hasher;
use std::net::SocketAddrV4;

use siphasher::sip::SipHasher24;

use crate::tcp::Config;
use crate::time::Instant;
use crate::wire::SeqNumber;

/// MSS values a cookie can carry (an index of 3 bits): Linux's IPv4 table
/// (536, 1300, 1440, 1460), then jumbo frames, so that they are not cut to
/// 1460 under cookies: MTU 4352 (FDDI), 9000, 9216, and 65535 (loopback),
/// each less 40 bytes of IPv4 and TCP headers.
pub const MSS_TABLE: [u16; 8] = [536, 1300, 1440, 1460, 4312, 8960, 9176, 65495];
/// Cookies older than this many 64-second periods are refused.
const MAX_AGE: u32 = 2;
const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
const TS_OPT_BITS: u32 = 6;
const TS_OPT_MASK: u32 = (1 << TS_OPT_BITS) - 1;
const TS_NO_WSCALE: u32 = 0xf;
const TS_SACK: u32 = 0x10;

/// The window a stateless (cookie) SYN-ACK advertises: the receive buffer,
/// up to 65,535 (RFC 7323 §2.2: a SYN's window is never scaled). The
/// connection rebuilt from the cookie starts with this window open
/// (`rcv_adv`), so data on or right after the final ACK is in window
/// (RFC 9293 §3.10.7.4).
pub fn syn_ack_window(config: &Config) -> u16 {
    config.recv_buffer.min(u16::MAX as usize) as u16
}

#[derive(Clone)]
pub struct SynCookies {
    k1: [u8; 16],
    k2: [u8; 16],
}

impl core::fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SynCookies { keys: <secret> }")
    }
}

fn hash(key: &[u8; 16], local: SocketAddrV4, remote: SocketAddrV4, extra: Option<(u32, u32)>) -> u32 {
    let mut h = SipHasher24::new_with_key(key);
    h.write(&local.ip().octets());
    h.write_u16(local.port());
    h.write(&remote.ip().octets());
    h.write_u16(remote.port());
    if let Some((count, peer_isn)) = extra {
        h.write_u32(count);
        h.write_u32(peer_isn);
    }
    h.finish() as u32
}

fn period(now: Instant) -> u32 {
    (now.as_millis() / 64_000) as u32
}

impl SynCookies {
    pub fn new(key: [u8; 16]) -> Self {
        let mut k1 = key;
        let mut k2 = key;
        k1[15] ^= 0x5a;
        k2[0] ^= 0xa5;
        // Derive two independent keys from the secret.
        let derive = |k: &[u8; 16], tag: u8| {
            let mut out = [0u8; 16];
            for (i, chunk) in out.chunks_mut(8).enumerate() {
                let mut h = SipHasher24::new_with_key(k);
                h.write_u8(tag);
                h.write_u8(i as u8);
                chunk.copy_from_slice(&h.finish().to_le_bytes());
            }
            out
        };
        SynCookies { k1: derive(&k1, 1), k2: derive(&k2, 2) }
    }

    /// The cookie ISS for a SYN, and the MSS it encodes (the largest table
    /// entry not above the peer's MSS).
    pub fn encode(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4, peer_isn: SeqNumber, peer_mss: u16) -> (SeqNumber, u16) {
        let index = MSS_TABLE.iter().rposition(|&m| m <= peer_mss).unwrap_or(0);
        let count = period(now);
        let h1 = hash(&self.k1, local, remote, None);
        let h2 = hash(&self.k2, local, remote, Some((count, peer_isn.0)));
        let cookie = h1.wrapping_add(peer_isn.0).wrapping_add(count << COOKIE_BITS).wrapping_add(h2.wrapping_add(index as u32) & COOKIE_MASK);
        (SeqNumber(cookie), MSS_TABLE[index])
    }

    /// Checks a cookie from a final ACK (`peer_isn` = SEG.SEQ − 1,
    /// `cookie` = SEG.ACK − 1); returns the MSS it encodes.
    pub fn decode(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4, peer_isn: SeqNumber, cookie: SeqNumber) -> Option<u16> {
        let h1 = hash(&self.k1, local, remote, None);
        let v = cookie.0.wrapping_sub(h1).wrapping_sub(peer_isn.0);
        let now_count = period(now);
        let age = now_count.wrapping_sub(v >> COOKIE_BITS) & 0xff;
        if age > MAX_AGE {
            return None;
        }
        let count = now_count.wrapping_sub(age);
        let h2 = hash(&self.k2, local, remote, Some((count, peer_isn.0)));
        let index = (v & COOKIE_MASK).wrapping_sub(h2) & COOKIE_MASK;
        MSS_TABLE.get(index as usize).copied()
    }

    /// A TSval not above `tsval_now` whose low 6 bits carry the peer's window
    /// scale from its SYN (0xf = none; above 14 counts as 14, RFC 7323 §2.3)
    /// and SACK-permitted.
    pub fn encode_ts(&self, tsval_now: u32, wscale: Option<u8>, sack: bool) -> u32 {
        let opts = wscale.map_or(TS_NO_WSCALE, |w| u32::from(w.min(14))) | if sack { TS_SACK } else { 0 };
        let mut ts = (tsval_now & !TS_OPT_MASK) | opts;
        if (ts.wrapping_sub(tsval_now) as i32) > 0 {
            // Never run ahead of our clock: step back one 64 ms slot.
            ts = ts.wrapping_sub(1 << TS_OPT_BITS);
        }
        ts
    }

    /// The options from the TSecr of a final ACK: the peer's window scale
    /// (if it sent one) and SACK-permitted.
    pub fn decode_ts(&self, tsecr: u32) -> (Option<u8>, bool) {
        let ws = tsecr & 0xf;
        ((ws != TS_NO_WSCALE).then_some(ws.min(14) as u8), tsecr & TS_SACK != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;
    use std::net::Ipv4Addr;

    const L: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80);
    const R: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000);

    #[test]
    fn round_trip_every_mss() {
        let c = SynCookies::new([9; 16]);
        let now = Instant::from_secs(1000);
        let jumbo = [(1500, 1460), (4312, 4312), (8960, 8960), (9000, 8960), (9176, 9176), (65495, 65495), (65535, 65495)];
        for (peer_mss, want) in [(536, 536), (1000, 536), (1300, 1300), (1440, 1440), (1460, 1460), (100, 536)].into_iter().chain(jumbo) {
            let isn = SeqNumber(0xdead_beef);
            let (cookie, mss) = c.encode(now, L, R, isn, peer_mss);
            assert_eq!(mss, want);
            assert_eq!(c.decode(now + Duration::from_secs(5), L, R, isn, cookie), Some(want));
        }
    }

    #[test]
    fn rejects_forgeries_and_old_cookies() {
        let c = SynCookies::new([9; 16]);
        let now = Instant::from_secs(1000);
        let isn = SeqNumber(77);
        let (cookie, _) = c.encode(now, L, R, isn, 1460);
        assert_eq!(c.decode(now, R, L, isn, cookie), None, "other tuple");
        assert_eq!(c.decode(now, L, R, SeqNumber(78), cookie), None, "other peer ISN");
        // The low 3 bits carry the MSS index: a flip there may land on
        // another table entry (another MSS), never on this one. Every other
        // flip fails.
        for bit in 0..32 {
            let got = c.decode(now, L, R, isn, SeqNumber(cookie.0 ^ (1 << bit)));
            if bit < 3 {
                assert_ne!(got, Some(1460), "bit {bit}");
            } else {
                assert_eq!(got, None, "bit {bit} flipped");
            }
        }
        assert!(c.decode(now + Duration::from_secs(120), L, R, isn, cookie).is_some());
        assert_eq!(c.decode(now + Duration::from_secs(200), L, R, isn, cookie), None, "expired");
        assert_eq!(c.decode(now, L, R, isn, cookie), c.decode(now, L, R, isn, cookie));
    }

    #[test]
    fn timestamp_options_round_trip() {
        let c = SynCookies::new([3; 16]);
        for ws in (0..=14).map(Some).chain([None]) {
            for sack in [false, true] {
                for now in [1000u32, 1_000_063, 64, u32::MAX] {
                    let ts = c.encode_ts(now, ws, sack);
                    assert!((now.wrapping_sub(ts) as i32) >= 0, "TSval ahead of clock");
                    assert!(now.wrapping_sub(ts) < 128);
                    assert_eq!(c.decode_ts(ts), (ws, sack));
                }
            }
        }
    }
}
