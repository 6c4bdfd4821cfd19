#![no_main]
//! A whole Ethernet frame, down through IPv4 to TCP, ICMP or ARP, the way
//! the stack walks it.
use libfuzzer_sys::fuzz_target;
use xdptcp::wire::*;

fuzz_target!(|data: &[u8]| {
    let Ok(eth) = EthernetFrame::new_checked(data) else { return };
    match eth.ethertype() {
        EtherType::Arp => {
            if let Ok(p) = ArpPacket::new_checked(eth.payload()) {
                let _ = ArpRepr::parse(&p);
            }
        }
        EtherType::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return };
            let Ok(repr) = Ipv4Repr::parse(&ip, true) else { return };
            match repr.protocol {
                IpProtocol::Tcp => {
                    if let Ok(p) = TcpPacket::new_checked(ip.payload()) {
                        let _ = TcpRepr::parse(&p, repr.src_addr, repr.dst_addr, true);
                    }
                }
                IpProtocol::Icmp => {
                    if let Ok(p) = IcmpPacket::new_checked(ip.payload()) {
                        let _ = IcmpEchoRepr::parse(&p);
                    }
                }
                _ => {}
            }
        }
        EtherType::Unknown(_) => {}
    }
});
