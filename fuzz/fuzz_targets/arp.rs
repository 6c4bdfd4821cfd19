#![no_main]
use libfuzzer_sys::fuzz_target;
use xdptcp::wire::{ArpPacket, ArpRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = ArpPacket::new_checked(data) {
        if let Ok(repr) = ArpRepr::parse(&packet) {
            let mut out = [0u8; 28];
            repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
            assert_eq!(ArpRepr::parse(&ArpPacket::new_unchecked(&out[..])).unwrap(), repr);
        }
    }
});
