#![no_main]
use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use xdptcp::wire::{TcpOptions, TcpPacket, TcpRepr};

const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fuzz_target!(|data: &[u8]| {
    let _ = TcpOptions::parse(data);
    if let Ok(packet) = TcpPacket::new_checked(data) {
        let _ = (packet.options(), packet.payload(), packet.verify_checksum(SRC, DST));
        if let Ok(repr) = TcpRepr::parse(&packet, SRC, DST, false) {
            // Re-emitting canonicalises the options; the result must parse to
            // the same Repr (SACK blocks beyond what fits are dropped).
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), SRC, DST, true);
            let again = TcpRepr::parse(&TcpPacket::new_checked(&out[..]).unwrap(), SRC, DST, true).unwrap();
            let mut expect = repr;
            expect.options.sack_blocks.truncate(again.options.sack_blocks.len());
            assert_eq!(again, expect);
        }
    }
});
