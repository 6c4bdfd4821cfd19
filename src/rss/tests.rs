use super::*;
use proptest::prelude::*;

/// The key of Microsoft's RSS verification suite.
const MS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb,
    0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Every IPv4 vector of Microsoft's "Verifying the RSS Hash Calculation"
/// (Windows driver documentation, learn.microsoft.com/windows-hardware/
/// drivers/network/verifying-the-rss-hash-calculation; the same suite is in
/// Intel's 82599 datasheet, §7.1.2.8.3 "RSS Verification Suite"), typed in
/// from that table, in its column order: destination, source, the IPv4-only
/// hash, the IPv4-with-TCP hash. The hashed packet goes from source to
/// destination.
const MS_IPV4: [(&str, &str, u32, u32); 5] = [
    ("161.142.100.80:1766", "66.9.149.187:2794", 0x323e_8fc2, 0x51cc_c178),
    ("65.69.140.83:4739", "199.92.111.2:14230", 0xd718_262a, 0xc626_b0ea),
    ("12.22.207.184:38024", "24.19.198.95:12898", 0xd2d0_a5de, 0x5c2b_394a),
    ("209.142.163.6:2217", "38.27.205.30:48228", 0x8298_9176, 0xafc7_327f),
    ("202.188.127.2:1303", "153.39.163.191:44251", 0x5d18_09c5, 0x10e8_28a2),
];

fn vectors() -> impl Iterator<Item = (SocketAddrV4, SocketAddrV4, u32, u32)> {
    MS_IPV4.iter().map(|&(d, s, ip, tcp)| (s.parse().unwrap(), d.parse().unwrap(), ip, tcp))
}

#[test]
fn microsoft_vectors_bitwise() {
    for (src, dst, ip_only, with_tcp) in vectors() {
        let input = ipv4_tcp_input(src, dst);
        assert_eq!(toeplitz(&MS_KEY, &input[..IPV4_INPUT]), ip_only, "IPv4 only, {src} -> {dst}");
        assert_eq!(toeplitz(&MS_KEY, &input), with_tcp, "IPv4 with TCP, {src} -> {dst}");
    }
}

#[test]
fn microsoft_vectors_tables() {
    let t = Toeplitz::new(&MS_KEY);
    for (src, dst, ip_only, with_tcp) in vectors() {
        let input = ipv4_tcp_input(src, dst);
        assert_eq!(t.hash(&input[..IPV4_INPUT]), ip_only, "IPv4 only, {src} -> {dst}");
        assert_eq!(t.ipv4_tcp(src, dst), with_tcp, "IPv4 with TCP, {src} -> {dst}");
    }
}

#[test]
fn selector_hashes_as_the_nic() {
    let table: Vec<u32> = (0..128).map(|i| i % 4).collect();
    let with_ports = RssSelector::new(&MS_KEY, table.clone(), 0, true).unwrap();
    let addresses_only = RssSelector::new(&MS_KEY, table.clone(), 0, false).unwrap();
    for (src, dst, ip_only, with_tcp) in vectors() {
        assert_eq!(with_ports.rx_hash(src, dst), with_tcp);
        assert_eq!(addresses_only.rx_hash(src, dst), ip_only);
        assert_eq!(with_ports.rx_queue(src, dst), table[with_tcp as usize % 128]);
        // The split hash agrees: the packet src -> dst is the reply to an
        // open from dst to src.
        let prefix = with_ports.reply_prefix(src, *dst.ip());
        let q = table[with_tcp as usize % 128];
        assert!(with_ports.for_queue(q).lands_here(prefix, dst.port()));
        assert!(!with_ports.for_queue((q + 1) % 4).lands_here(prefix, dst.port()));
    }
}

#[test]
fn unreachable_queue_and_empty_table() {
    assert!(RssSelector::new(&MS_KEY, Vec::new(), 0, true).is_none());
    let s = RssSelector::new(&MS_KEY, vec![0, 1, 0, 1], 2, true).unwrap();
    assert!(!s.reachable());
    let p = s.reply_prefix("10.0.0.1:80".parse().unwrap(), Ipv4Addr::new(10, 0, 0, 2));
    assert!((0..=u16::MAX).all(|port| !s.lands_here(p, port)));
    assert!(s.for_queue(1).reachable());
}

#[test]
fn short_and_long_keys() {
    // Key bits past the end read as zero: a 4-byte key hashes the first
    // input bit to the key itself and the last ones to nothing.
    let key = [0x80, 0, 0, 1];
    assert_eq!(toeplitz(&key, &[0x80]), 0x8000_0001);
    assert_eq!(toeplitz(&key, &[0, 0, 0, 0, 1]), 0);
    assert_eq!(Toeplitz::new(&key).hash(&[0x80]), 0x8000_0001);
    // A 52-byte key (some NICs) hashes as its first 16 bytes for IPv4.
    let long: Vec<u8> = MS_KEY.iter().chain(MS_KEY[..12].iter()).copied().collect();
    let t = Toeplitz::new(&long);
    for (src, dst, _, with_tcp) in vectors() {
        assert_eq!(t.ipv4_tcp(src, dst), with_tcp);
    }
}

fn xor<const N: usize>(a: [u8; N], b: [u8; N]) -> [u8; N] {
    let mut out = [0u8; N];
    for i in 0..N {
        out[i] = a[i] ^ b[i];
    }
    out
}

proptest! {
    /// Linearity over GF(2): hash(a ^ b) = hash(a) ^ hash(b).
    #[test]
    fn linear(key in proptest::collection::vec(any::<u8>(), 0..60), a in any::<[u8; 12]>(), b in any::<[u8; 12]>()) {
        prop_assert_eq!(toeplitz(&key, &xor(a, b)), toeplitz(&key, &a) ^ toeplitz(&key, &b));
        prop_assert_eq!(toeplitz(&key, &[0u8; 12]), 0);
    }

    /// The table-driven hash is the bitwise one.
    #[test]
    fn tables_match_bitwise(key in proptest::collection::vec(any::<u8>(), 0..60), input in proptest::collection::vec(any::<u8>(), 0..=12)) {
        prop_assert_eq!(Toeplitz::new(&key).hash(&input), toeplitz(&key, &input));
    }

    /// A port accepted by `lands_here` is one whose reply the full hash
    /// sends to the queue, and the other way round.
    #[test]
    fn lands_here_is_the_full_hash(
        key in proptest::collection::vec(any::<u8>(), 16..52),
        table in proptest::collection::vec(0u32..4, 1..130),
        remote in any::<(u32, u16)>(),
        local in any::<(u32, u16)>(),
        ports in any::<bool>(),
    ) {
        let remote = SocketAddrV4::new(Ipv4Addr::from(remote.0), remote.1);
        let local = SocketAddrV4::new(Ipv4Addr::from(local.0), local.1);
        let sel = RssSelector::new(&key, table.clone(), 0, ports).unwrap();
        let input = ipv4_tcp_input(remote, local);
        let hash = toeplitz(&key, if ports { &input[..] } else { &input[..IPV4_INPUT] });
        let q = table[hash as usize % table.len()];
        for queue in 0..4 {
            let s = sel.for_queue(queue);
            prop_assert_eq!(s.lands_here(s.reply_prefix(remote, *local.ip()), local.port()), q == queue);
        }
    }
}
