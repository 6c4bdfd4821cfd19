#![no_main]
use libfuzzer_sys::fuzz_target;
use xdptcp::wire::{IcmpEchoRepr, IcmpPacket};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = IcmpPacket::new_checked(data) {
        if let Ok(repr) = IcmpEchoRepr::parse(&packet) {
            // Bytes may differ only in the checksum's representation of zero
            // (0x0000 vs 0xffff); the Repr must come back the same.
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut IcmpPacket::new_unchecked(&mut out[..]));
            assert_eq!(&out[4..], &data[4..]);
            assert_eq!(IcmpEchoRepr::parse(&IcmpPacket::new_checked(&out[..]).unwrap()).unwrap(), repr);
        }
    }
});
