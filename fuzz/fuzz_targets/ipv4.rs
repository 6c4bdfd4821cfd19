#![no_main]
use libfuzzer_sys::fuzz_target;
use xdptcp::wire::{Ipv4Packet, Ipv4Repr};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Ipv4Packet::new_checked(data) {
        let _ = (packet.payload(), packet.verify_checksum(), packet.is_fragment(), packet.ident());
        if let Ok(repr) = Ipv4Repr::parse(&packet, true) {
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
            let again = Ipv4Repr::parse(&Ipv4Packet::new_checked(&out[..]).unwrap(), true).unwrap();
            assert_eq!(again, repr);
        }
    }
});
