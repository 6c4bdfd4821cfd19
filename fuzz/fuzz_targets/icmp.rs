#![no_main]
use libfuzzer_sys::fuzz_target;
use xdptcp::wire::{IcmpEchoRepr, IcmpPacket};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = IcmpPacket::new_checked(data) {
        if let Ok(repr) = IcmpEchoRepr::parse(&packet) {
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut IcmpPacket::new_unchecked(&mut out[..]));
            assert_eq!(&out[..], data, "echo messages re-emit byte for byte");
        }
    }
});
