//! A flood of unmatched segments on a two-shard stack leaves memory flat:
//! each segment is forwarded by the shard that received it to the shard
//! owning its tuple (`Verdict::Forward`), through the bounded hand-off
//! lanes (`runtime::handoff`), and handled there as the last hop. A
//! counting global allocator shows that after warm-up nothing is allocated
//! per segment, and that the bytes allocated before and after the flood
//! are the same, also when the lanes overflow and drop (counted).
#![cfg(feature = "datapath")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use xdptcp::app::App;
use xdptcp::runtime::Handoff;
use xdptcp::stack::{Cores, Shard, StackConfig, Verdict};
use xdptcp::time::Instant;
use xdptcp::wire::*;

/// Counts this thread's allocations while `COUNTING` is on.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTING.try_with(|c| c.get()).unwrap_or(false)
}

// SAFETY (the allocator contract): every call is passed on to the system
// allocator unchanged; the counters are plain atomics.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SERVER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

#[derive(Default)]
struct Idle;
impl App for Idle {
    type State = ();
}

fn shard(index: u16) -> Shard<Idle> {
    let mut cfg = StackConfig::new(SERVER_MAC, SERVER_IP, 24);
    cfg.cores = Cores { index, count: 2 };
    Shard::new(cfg, [7; 16])
}

/// A reset from the peer for a connection nobody has: matched by no
/// connection or listener, answered by nothing (RFC 9293 §3.10.7.1).
fn unmatched(src_port: u16, dst_port: u16, seq: u32) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port,
        dst_port,
        seq: SeqNumber(seq),
        ack: SeqNumber(0),
        flags: TcpFlags::RST,
        window: 0,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    };
    let ip = Ipv4Repr { src_addr: PEER_IP, dst_addr: SERVER_IP, protocol: IpProtocol::Tcp, payload_len: tcp.buffer_len(), ttl: 64 };
    let mut f = vec![0u8; 34 + tcp.buffer_len()];
    EthernetRepr { src_addr: PEER_MAC, dst_addr: SERVER_MAC, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
    tcp.emit(&mut TcpPacket::new_unchecked(&mut f[34..]), PEER_IP, SERVER_IP, true);
    f
}

/// What one flood did.
#[derive(Debug, Default, PartialEq)]
struct Flood {
    forwarded: [u64; 2],
    delivered: [u64; 2],
}

/// Pushes `n` of `frames` through the two shards: each frame to shard
/// `k % 2` first (as the NIC might), forwarded over the lanes, and every
/// `drain_every` frames the lanes are drained into their owners.
fn flood(shards: &mut [Shard<Idle>; 2], lanes: &mut [Handoff], frames: &[Vec<u8>], n: usize, drain_every: usize, now: Instant) -> Flood {
    let mut app = Idle;
    let mut out = Flood::default();
    for k in 0..n {
        let first = k % 2;
        let frame = &frames[k % frames.len()];
        if let Verdict::Forward { core } = shards[first].handle_frame_checked(now, frame, &mut app, false) {
            assert_eq!(usize::from(core), 1 - first, "forwarded to the other shard");
            lanes[first].send(core, frame);
            out.forwarded[first] += 1;
        }
        if (k + 1) % drain_every == 0 || k + 1 == n {
            for (to, shard) in shards.iter_mut().enumerate() {
                out.delivered[to] += lanes[to].recv(|f| {
                    shard.count_handoff_in();
                    let v = shard.handle_frame_checked(now, f, &mut app, true);
                    assert_eq!(v, Verdict::Done, "the last hop never forwards");
                }) as u64;
            }
        }
    }
    out
}

#[test]
fn an_unmatched_flood_through_the_handoff_allocates_nothing_and_stays_flat() {
    let mut shards = [shard(0), shard(1)];
    const SLOTS: usize = 128;
    let mut lanes = Handoff::ring_sized(2, SLOTS, 1514);
    let frames: Vec<Vec<u8>> = (0..4096u32).map(|i| unmatched(10_000 + (i % 40_000) as u16, 80 + (i / 997) as u16, i.wrapping_mul(2_654_435_761))).collect();
    let now = Instant::from_nanos(1_000_000_000);

    // Warm-up: every path once, lanes full and drained.
    let warm = flood(&mut shards, &mut lanes, &frames, 8192, 64, now);
    assert!(warm.forwarded[0] > 0 && warm.forwarded[1] > 0, "both shards forward some: {warm:?}");

    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let in_before = [shards[0].stats().handoffs_in, shards[1].stats().handoffs_in];
    COUNTING.with(|c| c.set(true));
    let steady = flood(&mut shards, &mut lanes, &frames, 100_000, 64, now);
    // Lanes drained too seldom overflow: the rest is dropped, counted.
    let flooded = flood(&mut shards, &mut lanes, &frames, 100_000, 4 * SLOTS * 2, now);
    COUNTING.with(|c| c.set(false));
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let after = LIVE_BYTES.load(Ordering::Relaxed);

    assert_eq!(allocs, 0, "allocations during 200,000 unmatched segments");
    assert_eq!(after, before, "bytes allocated before and after the flood");
    // Drained every 64 frames, nothing is dropped: every forwarded frame
    // reached its owner, as the shards counted it.
    assert_eq!(steady.forwarded, [steady.delivered[1], steady.delivered[0]], "{steady:?}");
    assert!(steady.forwarded[0] > 20_000 && steady.forwarded[1] > 20_000, "{steady:?}");
    let drops = lanes[0].drops() + lanes[1].drops();
    let warm_drops = 0; // the warm-up drained every 64 frames too
    assert!(drops > warm_drops, "the overflowing flood dropped some");
    let forwarded = flooded.forwarded[0] + flooded.forwarded[1];
    let delivered = flooded.delivered[0] + flooded.delivered[1];
    assert_eq!(forwarded, delivered + drops, "every forwarded frame delivered or counted as dropped: {flooded:?}");
    assert_eq!(
        shards[0].stats().handoffs_in + shards[1].stats().handoffs_in - in_before[0] - in_before[1],
        steady.delivered[0] + steady.delivered[1] + delivered
    );
    assert_eq!(lanes[0].sent() + lanes[1].sent(), warm.forwarded[0] + warm.forwarded[1] + steady.forwarded[0] + steady.forwarded[1] + delivered);
}
