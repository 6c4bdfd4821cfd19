//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The sum is taken 32 bytes at a time in eight 64-bit lanes, in native
//! byte order, and folded to 16 bits only at the end, instead of byte by byte.

use std::net::Ipv4Addr;

/// Adds `data` (big-endian 16-bit words, odd length padded with a zero byte)
/// to a running one's-complement sum. Returns an unfolded 64-bit sum.
///
/// The one's-complement sum is byte-order independent (RFC 1071 §2(B)), so
/// the bytes are summed as native-order 32-bit words into 64-bit lanes (no
/// carries for any packet size, no byte swaps, vectorizable) and the folded
/// result is swapped into network order once at the end.
#[inline]
pub fn sum(acc: u64, data: &[u8]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane += u64::from(u32::from_ne_bytes([c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3]]));
        }
    }
    let mut total: u64 = lanes.iter().sum();
    let mut words = chunks.remainder().chunks_exact(4);
    for w in &mut words {
        total += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        // Zero padding in memory order is the RFC's padding in either byte order.
        let mut last = [0u8; 4];
        last[..tail.len()].copy_from_slice(tail);
        total += u64::from(u32::from_ne_bytes(last));
    }
    let network = u64::from(u16::from_be(fold(total)));
    let (s, carry) = acc.overflowing_add(network);
    s + u64::from(carry)
}

/// Folds a 64-bit one's-complement sum to 16 bits (not complemented).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The checksum of `data`: the complement of its folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(0, data))
}

/// The IPv4 pseudo-header sum for TCP/UDP (RFC 9293 §3.1).
#[inline]
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: usize) -> u64 {
    u64::from(u32::from(src)) + u64::from(u32::from(dst)) + u64::from(protocol) + length as u64
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') when a 16-bit word m becomes m'.
#[inline]
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!checksum) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// RFC 1624 for a 32-bit field (two 16-bit words), e.g. a sequence number.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let c = update_u16(checksum, (old >> 16) as u16, (new >> 16) as u16);
    update_u16(c, old as u16, new as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytewise(data: &[u8]) -> u16 {
        let mut acc = 0u32;
        for pair in data.chunks(2) {
            let w = if pair.len() == 2 { u16::from_be_bytes([pair[0], pair[1]]) } else { u16::from_be_bytes([pair[0], 0]) };
            acc += u32::from(w);
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn matches_bytewise_for_all_lengths() {
        let data: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(checksum(&data[..len]), bytewise(&data[..len]), "length {len}");
        }
        let ones = vec![0xffu8; 1500];
        assert_eq!(checksum(&ones), bytewise(&ones));
    }

    #[test]
    fn incremental_update_matches_recomputation() {
        let mut data: Vec<u8> = (0..64u8).collect();
        let before = checksum(&data);
        let old = u32::from_be_bytes(data[4..8].try_into().unwrap());
        for new in [0u32, 1, 0xffff_ffff, 0x1234_5678, old.wrapping_add(1448)] {
            data[4..8].copy_from_slice(&new.to_be_bytes());
            assert_eq!(update_u32(before, old, new), checksum(&data), "{old:#x} → {new:#x}");
            data[4..8].copy_from_slice(&old.to_be_bytes());
        }
    }
}
