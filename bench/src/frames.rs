//! The raw AF_XDP frame rate on an interface pair: the I/O limit any stack on
//! it works under. One side sends minimum-size TCP frames from an AF_XDP
//! socket as fast as it can; the other steers them into its own AF_XDP
//! socket and drops them (like the kernel's xdpsock rxdrop), counting.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::xdp::stack_config;
use xdptcp::xdp::not_root;
use xdptcp::wire::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpPacket, TcpRepr};
use xdptcp::xdp::{QueueConfig, SteerProgram, XdpMode, XskQueue};

/// What `frames` measured.
#[derive(Debug, Clone, Copy)]
pub struct FrameRate {
    pub frames: u64,
    pub seconds: f64,
}

impl FrameRate {
    pub fn per_second(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }
}

fn open(iface: &str, ip: Ipv4Addr, mode: XdpMode, core: Option<usize>) -> Result<(SteerProgram, XskQueue), String> {
    if not_root() {
        return Err("needs CAP_NET_ADMIN and CAP_BPF: run as root".into());
    }
    let mut program = SteerProgram::attach(iface, ip, 1, 0, mode).map_err(|e| e.to_string())?;
    // Frames as large as the link carries (chains above one UMEM frame).
    let mtu = xdptcp::host::iface_mtu(iface).map_err(|e| e.to_string())? as u32;
    let queue = XskQueue::open(iface, 0, QueueConfig::for_mtu(mtu)).map_err(|e| e.to_string())?;
    program.register(0, queue.fd()).map_err(|e| e.to_string())?;
    if let Some(id) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    Ok((program, queue))
}

/// Receives and drops frames for `ip` on queue 0 of `iface` for `duration`
/// after the first one arrives (or until `duration` passes without any).
pub fn rxdrop(iface: &str, ip: &str, mode: XdpMode, core: Option<usize>, duration: Duration) -> Result<FrameRate, String> {
    let cfg = stack_config(iface, ip, None)?;
    let (_program, mut queue) = open(iface, cfg.ip, mode, core)?;
    let deadline = Instant::now() + duration * 2;
    let mut first: Option<Instant> = None;
    let mut frames = 0u64;
    loop {
        let now = Instant::now();
        let n = queue.recv(64, |_| {});
        if n > 0 && first.is_none() {
            first = Some(now);
        }
        if first.is_some() {
            frames += n as u64;
        }
        match first {
            Some(t) if now - t >= duration => return Ok(FrameRate { frames, seconds: (now - t).as_secs_f64() }),
            None if now >= deadline => return Ok(FrameRate { frames: 0, seconds: duration.as_secs_f64() }),
            _ => {}
        }
    }
}

/// Sends TCP frames of `size` bytes (at least 60: Ethernet, IPv4, TCP and
/// some payload; 1514 is a full MTU) to `dst_ip`/`dst_mac` from queue 0 of
/// `iface` for `duration`.
#[allow(clippy::too_many_arguments)]
pub fn txonly(iface: &str, ip: &str, dst_ip: Ipv4Addr, dst_mac: EthernetAddress, size: usize, mode: XdpMode, core: Option<usize>, duration: Duration) -> Result<FrameRate, String> {
    let cfg = stack_config(iface, ip, None)?;
    let (_program, mut queue) = open(iface, cfg.ip, mode, core)?;
    let frame = template(cfg.mac, cfg.ip, dst_mac, dst_ip, size.clamp(60, cfg.mtu + 14));
    let start = Instant::now();
    let mut frames = 0u64;
    while start.elapsed() < duration {
        while let Some(true) = queue.send_with(|buf| {
            buf[..frame.len()].copy_from_slice(&frame);
            Some(frame.len())
        }) {
            frames += 1;
        }
        queue.flush();
    }
    Ok(FrameRate { frames, seconds: start.elapsed().as_secs_f64() })
}

fn template(src_mac: EthernetAddress, src_ip: Ipv4Addr, dst_mac: EthernetAddress, dst_ip: Ipv4Addr, size: usize) -> Vec<u8> {
    let payload = vec![b'x'; size - 54];
    let tcp = TcpRepr {
        src_port: 9,
        dst_port: 9,
        seq: SeqNumber(1),
        ack: SeqNumber(0),
        flags: TcpFlags::ACK,
        window: 0,
        urgent: 0,
        options: Default::default(),
        payload: &payload,
    };
    let ip = Ipv4Repr { src_addr: src_ip, dst_addr: dst_ip, protocol: IpProtocol::Tcp, payload_len: tcp.header_len() + payload.len(), ttl: 64 };
    let mut frame = vec![0u8; 14 + 20 + tcp.header_len() + payload.len()];
    EthernetRepr { src_addr: src_mac, dst_addr: dst_mac, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..]));
    tcp.emit(&mut TcpPacket::new_unchecked(&mut frame[34..]), src_ip, dst_ip, true);
    frame
}

/// Bounces every frame for `ip` back to its sender (MACs and addresses
/// swapped), until `duration` passes without traffic or in all.
pub fn reflect(iface: &str, ip: &str, mode: XdpMode, core: Option<usize>, duration: Duration) -> Result<FrameRate, String> {
    let cfg = stack_config(iface, ip, None)?;
    let (_program, mut queue) = open(iface, cfg.ip, mode, core)?;
    let start = Instant::now();
    let mut frames = 0u64;
    let mut pending: Vec<Vec<u8>> = Vec::new();
    while start.elapsed() < duration {
        queue.recv(64, |f| pending.push(f.to_vec()));
        for mut f in pending.drain(..) {
            if f.len() < 34 {
                continue;
            }
            let (dst, src) = f[..12].split_at_mut(6);
            dst.swap_with_slice(src);
            let (a, b) = f[26..34].split_at_mut(4);
            a.swap_with_slice(b);
            let _ = queue.send_with(|buf| {
                buf[..f.len()].copy_from_slice(&f);
                Some(f.len())
            });
            frames += 1;
        }
        queue.flush();
    }
    Ok(FrameRate { frames, seconds: start.elapsed().as_secs_f64() })
}

/// Sends one minimum-size frame at a time to a reflector and waits for it
/// to come back: the round trip of the link with no TCP, in nanoseconds.
#[allow(clippy::too_many_arguments)]
pub fn pingpong(iface: &str, ip: &str, dst_ip: Ipv4Addr, dst_mac: EthernetAddress, mode: XdpMode, core: Option<usize>, duration: Duration) -> Result<hdrhistogram::Histogram<u64>, String> {
    let cfg = stack_config(iface, ip, None)?;
    let (_program, mut queue) = open(iface, cfg.ip, mode, core)?;
    let frame = template(cfg.mac, cfg.ip, dst_mac, dst_ip, 130);
    let mut hist = crate::load::histogram();
    let start = Instant::now();
    while start.elapsed() < duration {
        let sent = Instant::now();
        let _ = queue.send_with(|buf| {
            buf[..frame.len()].copy_from_slice(&frame);
            Some(frame.len())
        });
        queue.flush();
        let give_up = sent + Duration::from_millis(100);
        loop {
            let got = queue.recv(64, |_| {});
            if got > 0 {
                let _ = hist.record(sent.elapsed().as_nanos() as u64);
                break;
            }
            queue.flush();
            if Instant::now() > give_up {
                break;
            }
        }
    }
    Ok(hist)
}

/// What `flood` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flood {
    /// SYNs to `port` from spoofed on-link addresses (.128–.254 of the
    /// sender's /24) and random ports and sequence numbers.
    Syn,
    /// Malformed frames for the target: truncated headers, bad lengths, bad
    /// IPv4 and TCP checksums, IPv4 options, fragments, zero-length and
    /// oversized frames, in turn.
    Junk,
    /// Blind in-window attacks on one established connection (RFC 5961):
    /// RSTs, SYNs and data segments as if from `spoof`, with guessed
    /// sequence and acknowledgment numbers, in turn.
    Blind,
}

/// The kinds of junk, in the order `flood --kind junk` cycles through them.
pub const JUNK_KINDS: usize = 8;

/// Sends `kind` frames to `dst_ip`/`dst_mac` as fast as queue 0 of `iface`
/// takes them, for `duration`. Deterministic (seeded), so a run can be
/// repeated.
#[allow(clippy::too_many_arguments)]
pub fn flood(iface: &str, ip: &str, dst_ip: Ipv4Addr, dst_mac: EthernetAddress, port: u16, kind: Flood, spoof: Option<std::net::SocketAddrV4>, mode: XdpMode, core: Option<usize>, duration: Duration) -> Result<FrameRate, String> {
    if kind == Flood::Blind && spoof.is_none() {
        return Err("a blind attack needs the connection's peer address (--spoof ADDR:PORT)".into());
    }
    let cfg = stack_config(iface, ip, None)?;
    let (_program, mut queue) = open(iface, cfg.ip, mode, core)?;
    let mut rng = xdptcp::sim::rng::Rng::new(0x5eed_f100d);
    let base = u32::from(cfg.ip) & !0xff;
    let start = Instant::now();
    let mut frames = 0u64;
    let mut scratch = Vec::with_capacity(2048);
    while start.elapsed() < duration {
        while let Some(true) = queue.send_with(|buf| {
            scratch.clear();
            match kind {
                Flood::Syn => {
                    let src = Ipv4Addr::from(base | (128 + rng.gen_range(0..127) as u32));
                    syn_frame(&mut scratch, cfg.mac, src, dst_mac, dst_ip, 1024 + rng.gen_range(0..64000) as u16, port, rng.next_u32());
                }
                Flood::Junk => junk_frame(&mut scratch, cfg.mac, cfg.ip, dst_mac, dst_ip, port, (frames % JUNK_KINDS as u64) as usize, &mut rng),
                Flood::Blind => {
                    let from = spoof.expect("checked");
                    let (flags, payload): (TcpFlags, &[u8]) = match frames % 3 {
                        0 => (TcpFlags::RST, &[]),
                        1 => (TcpFlags::SYN, &[]),
                        _ => (TcpFlags::ACK | TcpFlags::PSH, b"injected"),
                    };
                    let (seq, ack) = (rng.next_u32(), rng.next_u32());
                    segment_frame(&mut scratch, cfg.mac, *from.ip(), dst_mac, dst_ip, from.port(), port, seq, ack, flags, payload);
                }
            }
            let n = scratch.len().min(buf.len());
            buf[..n].copy_from_slice(&scratch[..n]);
            Some(n.max(1))
        }) {
            frames += 1;
        }
        queue.flush();
    }
    Ok(FrameRate { frames, seconds: start.elapsed().as_secs_f64() })
}

#[allow(clippy::too_many_arguments)]
fn segment_frame(out: &mut Vec<u8>, src_mac: EthernetAddress, src: Ipv4Addr, dst_mac: EthernetAddress, dst: Ipv4Addr, sport: u16, dport: u16, seq: u32, ack: u32, flags: TcpFlags, payload: &[u8]) {
    let tcp = TcpRepr { src_port: sport, dst_port: dport, seq: SeqNumber(seq), ack: SeqNumber(ack), flags, window: 512, urgent: 0, options: Default::default(), payload };
    let ip = Ipv4Repr { src_addr: src, dst_addr: dst, protocol: IpProtocol::Tcp, payload_len: tcp.header_len() + payload.len(), ttl: 64 };
    out.resize(14 + 20 + tcp.header_len() + payload.len(), 0);
    EthernetRepr { src_addr: src_mac, dst_addr: dst_mac, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut out[14..]));
    tcp.emit(&mut TcpPacket::new_unchecked(&mut out[34..]), src, dst, true);
}

#[allow(clippy::too_many_arguments)]
fn syn_frame(out: &mut Vec<u8>, src_mac: EthernetAddress, src: Ipv4Addr, dst_mac: EthernetAddress, dst: Ipv4Addr, sport: u16, dport: u16, seq: u32) {
    let options = xdptcp::wire::TcpOptions { mss: Some(1460), ..Default::default() };
    let tcp = TcpRepr { src_port: sport, dst_port: dport, seq: SeqNumber(seq), ack: SeqNumber(0), flags: TcpFlags::SYN, window: 64240, urgent: 0, options, payload: &[] };
    let ip = Ipv4Repr { src_addr: src, dst_addr: dst, protocol: IpProtocol::Tcp, payload_len: tcp.header_len(), ttl: 64 };
    out.resize(14 + 20 + tcp.header_len(), 0);
    EthernetRepr { src_addr: src_mac, dst_addr: dst_mac, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut out[14..]));
    tcp.emit(&mut TcpPacket::new_unchecked(&mut out[34..]), src, dst, true);
}

/// One malformed frame of kind `k` (see [`Flood::Junk`]).
#[allow(clippy::too_many_arguments)]
fn junk_frame(out: &mut Vec<u8>, src_mac: EthernetAddress, src: Ipv4Addr, dst_mac: EthernetAddress, dst: Ipv4Addr, port: u16, k: usize, rng: &mut xdptcp::sim::rng::Rng) {
    syn_frame(out, src_mac, src, dst_mac, dst, 1024 + rng.gen_range(0..64000) as u16, port, rng.next_u32());
    match k {
        // Truncated: Ethernet and part of the IPv4 header only.
        0 => out.truncate(14 + 1 + rng.gen_range(0..18) as usize),
        // IPv4 total length beyond the frame.
        1 => out[16..18].copy_from_slice(&1400u16.to_be_bytes()),
        // Bad IPv4 header checksum.
        2 => out[24] ^= 0x5a,
        // Bad TCP checksum.
        3 => out[34 + 16] ^= 0xa5,
        // IPv4 options (IHL 6, one NOP word), checksums recomputed: valid,
        // and the stack must skip the options.
        4 => {
            let mut f = out[..34].to_vec();
            f[14] = 0x46;
            f.extend_from_slice(&[1, 1, 1, 0]);
            f.extend_from_slice(&out[34..]);
            let total = (f.len() - 14) as u16;
            f[16..18].copy_from_slice(&total.to_be_bytes());
            let mut p = Ipv4Packet::new_unchecked(&mut f[14..]);
            p.fill_checksum();
            *out = f;
        }
        // A fragment (more-fragments set), checksum recomputed.
        5 => {
            out[20] = 0x20;
            Ipv4Packet::new_unchecked(&mut out[14..]).fill_checksum();
        }
        // Zero-length frame... as short as a frame can be sent: one byte.
        6 => out.truncate(1),
        // Oversized: an IPv4 header claiming 1500 bytes in a 1514-byte frame
        // of random bytes after the TCP header.
        _ => {
            out.resize(1514, 0);
            for b in &mut out[54..] {
                *b = rng.next_u32() as u8;
            }
        }
    }
}
