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

SEC("xdp")
int xdp_steer(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    if (steer_ip == 0)
        return pass();

    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return pass();

    if (eth->h_proto == __builtin_bswap16(ETH_P_ARP)) {
        // Ethernet/IPv4 ARP: the target protocol address is at offset 24.
        __u8 *arp = (__u8 *)(eth + 1);
        if ((void *)(arp + 28) > end)
            return pass();
        __u32 target;
        __builtin_memcpy(&target, arp + 24, 4);
        if (ours(target))
            return steer(ctx, CNT_ARP);
        return pass();
    }

    if (eth->h_proto != __builtin_bswap16(ETH_P_IP))
        return pass();
    struct iphdr *ip = (struct iphdr *)(eth + 1);
    if ((void *)(ip + 1) > end || !ours(ip->daddr))
        return pass();
    if (ip->protocol == IPPROTO_ICMP)
        return steer(ctx, CNT_ICMP);
    if (ip->protocol != IPPROTO_TCP)
        return pass();
    if (steer_port == 0)
        return steer(ctx, CNT_TCP);
    __u32 ihl = ip->ihl * 4;
    if (ihl < sizeof(*ip))
        return pass();
    struct tcphdr *tcp = (struct tcphdr *)((__u8 *)ip + ihl);
    if ((void *)(tcp + 1) > end)
        return pass();
    if (tcp->dest == steer_port)
        return steer(ctx, CNT_TCP);
    return pass();
}

char _license[] SEC("license") = "Dual MIT/GPL";
