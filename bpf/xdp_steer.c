// SPDX-License-Identifier: GPL-2.0 OR MIT
//
// xdptcp's XDP program: steers the stack's own traffic into the AF_XDP
// socket of the receiving queue, and hands everything else to the kernel.
//
// Steered (for the configured IPv4 addresses: `count` consecutive ones from
// `ipv4` up): ARP whose target is one of them, ICMP to them, and TCP to them (optionally only to one port, when the
// address is shared with the kernel). Redirects go through
// xsks_map[rx_queue_index]; with no socket on that queue the frame falls
// back to XDP_PASS. Per-CPU counters record what happened.
//
// Multi-buffer: the program is built for frags (SEC("xdp.frags")), so the
// kernel accepts it on an interface whose MTU is larger than one page
// (jumbo frames on veth in native mode) and hands it packets in several
// buffers. Only the first buffer is in [data, data_end); the headers we
// look at (Ethernet, IPv4, the TCP ports) are normally all in it, and when
// they are not (a driver or a test run that puts less in the first
// buffer) they are copied out with bpf_xdp_load_bytes, so the verdict never
// depends on where the kernel split the packet.
//
// Built by build.rs with clang (-target bpf); the object is never committed.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;
static long (*bpf_xdp_get_buff_len)(struct xdp_md *ctx) = (void *)BPF_FUNC_xdp_get_buff_len;
static long (*bpf_xdp_load_bytes)(struct xdp_md *ctx, __u32 offset, void *buf, __u32 len) = (void *)BPF_FUNC_xdp_load_bytes;

// Longest header run we ever look at: Ethernet, IPv4 with options, the
// TCP destination port.
#define HDR_MAX (sizeof(struct ethhdr) + 60 + 4)

// Counter indices: keep in step with src/xdp/program.rs. `redirected` is
// not counted here: it is arp + icmp + tcp, summed in user space, so each
// frame costs one counter update.
enum {
    CNT_REDIRECTED = 0,
    CNT_PASSED = 1,
    CNT_ARP = 2,
    CNT_ICMP = 3,
    CNT_TCP = 4,
    CNT_COUNT = 5,
};

// What to steer, set by the loader before the program is loaded (aya's
// set_global patches .rodata): constants to the verifier and the JIT, so
// no map lookup per frame. Keep in step with src/xdp/program.rs.
volatile const __u32 steer_ip = 0;    // first address, host byte order; 0 = steer nothing
volatile const __u32 steer_count = 0; // how many consecutive addresses
volatile const __u16 steer_port = 0;  // network byte order; 0 = every TCP port

static __always_inline int ours(__u32 addr_be)
{
    return __builtin_bswap32(addr_be) - steer_ip < steer_count;
}

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, 256);
    __type(key, __u32);
    __type(value, __u32);
} xsks_map SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, CNT_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 index)
{
    __u64 *c = bpf_map_lookup_elem(&counters, &index);
    if (c)
        *c += 1;
}

static __always_inline int pass(void)
{
    count(CNT_PASSED);
    return XDP_PASS;
}

static __always_inline int steer(struct xdp_md *ctx, __u32 kind)
{
    count(kind);
    return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

// What to do with a frame whose headers are in [data, end): the counter
// kind to steer it under, or -1 to pass it. Bounds are checked against
// `end`, which is the packet's first buffer or a copy of its headers.
static __always_inline int classify(void *data, void *end)
{
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return -1;

    if (eth->h_proto == __builtin_bswap16(ETH_P_ARP)) {
        // Ethernet/IPv4 ARP: the target protocol address is at offset 24.
        __u8 *arp = (__u8 *)(eth + 1);
        if ((void *)(arp + 28) > end)
            return -1;
        __u32 target;
        __builtin_memcpy(&target, arp + 24, 4);
        return ours(target) ? CNT_ARP : -1;
    }

    if (eth->h_proto != __builtin_bswap16(ETH_P_IP))
        return -1;
    struct iphdr *ip = (struct iphdr *)(eth + 1);
    if ((void *)(ip + 1) > end || !ours(ip->daddr))
        return -1;
    if (ip->protocol == IPPROTO_ICMP)
        return CNT_ICMP;
    if (ip->protocol != IPPROTO_TCP)
        return -1;
    if (steer_port == 0)
        return CNT_TCP;
    __u32 ihl = ip->ihl * 4;
    if (ihl < sizeof(*ip))
        return -1;
    struct tcphdr *tcp = (struct tcphdr *)((__u8 *)ip + ihl);
    if ((void *)&tcp->dest + sizeof(tcp->dest) > end)
        return -1;
    return tcp->dest == steer_port ? CNT_TCP : -1;
}

SEC("xdp.frags")
int xdp_steer(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    if (steer_ip == 0)
        return pass();

    int kind;
    if (data + HDR_MAX <= end || (__u64)bpf_xdp_get_buff_len(ctx) == (__u64)(end - data)) {
        // Every header we may need is in the first buffer, or the packet
        // has only the one buffer: read it in place.
        kind = classify(data, end);
    } else {
        // The first buffer is short and more follow: copy the headers out
        // (as many bytes as the packet has, up to HDR_MAX).
        // The copy starts 2 bytes into an 8-aligned buffer, so that the
        // IPv4 header is 4-aligned, as the verifier wants stack loads.
        __u8 buf[HDR_MAX + 2] __attribute__((aligned(8))) = {};
        __u8 *hdr = buf + 2;
        __u64 len = bpf_xdp_get_buff_len(ctx);
        if (len > HDR_MAX)
            len = HDR_MAX;
        if (len < sizeof(struct ethhdr) || bpf_xdp_load_bytes(ctx, 0, hdr, len) != 0)
            return pass();
        kind = classify(hdr, hdr + len);
    }
    if (kind < 0)
        return pass();
    return steer(ctx, kind);
}

char _license[] SEC("license") = "Dual MIT/GPL";
