//! How a queue is set up: the AF_XDP bind mode (zero-copy or copy) and the
//! pages its UMEM sits on (2 MiB hugepages or normal pages).
//!
//! Policy only, no `unsafe` and no system calls beyond reading
//! `/proc/meminfo`: [`super::XskQueue::open`] applies it.
//!
//! Zero-copy (the NIC's DMA writes straight into the UMEM) needs a driver
//! with AF_XDP zero-copy support and the XDP program in native (driver)
//! mode. The kernel binds zero-copy on its own when neither XDP_ZEROCOPY nor
//! XDP_COPY is given and falls back silently; we never bind without a flag,
//! so the mode in use is always the one asked for or a logged fallback.

use std::fmt;

/// What `--zero-copy` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroCopy {
    /// Zero-copy or fail.
    Required,
    /// Zero-copy first; copy mode with a warning naming the reason if refused.
    #[default]
    Preferred,
    /// Copy mode (XDP_COPY) directly.
    Off,
}

/// What `--hugepages` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePages {
    /// Hugepages when enough are reserved and free, else normal pages.
    Auto,
    /// Hugepages or fail.
    On,
    /// Normal pages.
    #[default]
    Off,
}

/// The mode a socket is bound in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    #[default]
    Copy,
    ZeroCopy,
}

impl BindMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BindMode::Copy => "copy",
            BindMode::ZeroCopy => "zero-copy",
        }
    }
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a queue's UMEM was set up, for the log and `xdptcp stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UmemInfo {
    /// Bytes mapped for the UMEM.
    pub bytes: usize,
    pub frame_size: u32,
    pub frames: u32,
    /// Backed by hugetlb pages (MAP_HUGETLB).
    pub huge_pages: bool,
    /// The errno of a refused zero-copy bind that made us fall back to copy.
    pub zero_copy_refused: Option<i32>,
}

/// Why a driver refused a zero-copy bind, from its errno: the errno's name
/// and what it means here.
pub fn zero_copy_refusal(errno: i32) -> &'static str {
    match errno {
        libc::EOPNOTSUPP => "EOPNOTSUPP: driver has no AF_XDP zero-copy support",
        libc::EINVAL => "EINVAL: the driver refused the UMEM or queue for zero-copy (frame size, headroom, or queue id beyond its channels)",
        libc::EBUSY => "EBUSY: the queue is busy (another AF_XDP socket, or the channel is in use by a memory provider)",
        libc::ENOMEM => "ENOMEM: the driver could not allocate or DMA-map the zero-copy buffers",
        libc::ENOSPC => "ENOSPC: the driver could not allocate or DMA-map the zero-copy buffers",
        libc::EPERM | libc::EACCES => "not permitted (needs CAP_NET_ADMIN)",
        _ => "the driver refused zero-copy",
    }
}

/// What to check when zero-copy is refused, for an error a user can act on.
pub fn zero_copy_advice(iface: &str, queue: u32) -> String {
    format!(
        "check that the driver (`ethtool -i {iface}`) supports AF_XDP zero-copy (e.g. ice, i40e, ixgbe, igc, mlx5, stmmac; \
         not veth or generic XDP), that the XDP program runs in native mode (--xdp-mode native), that the frame size suits \
         the driver and the MTU (--frame-size), that queue {queue} exists (`ethtool -l {iface}`), and `dmesg` for the \
         driver's own message; or use --zero-copy preferred to fall back to copy mode"
    )
}

/// The hugetlb lines of `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    /// Promised to mappings but not yet faulted in: free, but not for us.
    pub reserved: u64,
    /// The default hugepage size (what MAP_HUGETLB gets), bytes.
    pub page_bytes: u64,
}

impl MemInfo {
    pub fn read() -> Option<MemInfo> {
        MemInfo::parse(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }

    pub fn parse(text: &str) -> Option<MemInfo> {
        let field = |name: &str| -> Option<u64> {
            let line = text.lines().find(|l| l.split(':').next() == Some(name))?;
            line.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
        };
        Some(MemInfo {
            total: field("HugePages_Total")?,
            free: field("HugePages_Free")?,
            reserved: field("HugePages_Rsvd").unwrap_or(0),
            page_bytes: field("Hugepagesize")? * 1024,
        })
    }

    /// Pages a new mapping can have now.
    pub fn usable(&self) -> u64 {
        self.free.saturating_sub(self.reserved)
    }

    /// Hugepages that hold `bytes`.
    pub fn pages_for(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.page_bytes.max(1))
    }

    /// The `vm.nr_hugepages` that leaves `pages` more usable than now.
    pub fn nr_hugepages_for(&self, pages: u64) -> u64 {
        self.total + pages.saturating_sub(self.usable())
    }
}

/// The frame count that fills whole hugepages: a hugetlb mapping is made of
/// whole pages, and unmapping a part of a page fails, so the UMEM must be a
/// multiple of the page size.
pub fn frames_filling_pages(frames: u32, frame_size: u32, page_bytes: u64) -> u32 {
    let per_page = (page_bytes / u64::from(frame_size.max(1))).max(1);
    let pages = u64::from(frames).div_ceil(per_page);
    (pages * per_page).min(u64::from(u32::MAX)) as u32
}

/// Whether to put the UMEM on hugepages, and the frame count (rounded up to
/// fill whole pages if so): the policy against `/proc/meminfo`.
pub fn huge_pages_plan(iface: &str, queue: u32, frames_asked: u32, frame_size: u32, policy: HugePages) -> Result<(bool, u32), String> {
    if frames_asked == 0 {
        return Err("zero frames".into());
    }
    if policy == HugePages::Off {
        return Ok((false, frames_asked));
    }
    let Some(mem) = MemInfo::read().filter(|m| m.page_bytes > 0) else {
        return match policy {
            HugePages::On => Err("--hugepages on: no hugetlb support (no HugePages_* in /proc/meminfo)".into()),
            _ => Ok((false, frames_asked)),
        };
    };
    let frames = frames_filling_pages(frames_asked, frame_size, mem.page_bytes);
    let pages = mem.pages_for(u64::from(frames) * u64::from(frame_size));
    if mem.usable() >= pages {
        if frames != frames_asked {
            log::info!("{iface} queue {queue}: {} frames rounded up to {frames} to fill whole {} kB hugepages", frames_asked, mem.page_bytes / 1024);
        }
        return Ok((true, frames));
    }
    let msg = format!(
        "UMEM of {} MiB needs {pages} hugepages of {} kB, {} free; reserve them with `sysctl vm.nr_hugepages={}`",
        (u64::from(frames) * u64::from(frame_size)) >> 20,
        mem.page_bytes / 1024,
        mem.usable(),
        mem.nr_hugepages_for(pages)
    );
    match policy {
        HugePages::On => Err(format!("--hugepages on: {iface} queue {queue}: {msg}")),
        _ => {
            // Callers serving several queues say it once, for all of them.
            log::debug!("{iface} queue {queue}: UMEM on normal pages: {msg}");
            Ok((false, frames_asked))
        }
    }
}

/// Waits up to `timeout` until `usable` hugepages are free again: the
/// kernel lets go of a closed socket's UMEM pages in deferred work, so after
/// a refused bind they come back a moment later. False on timeout.
pub fn wait_for_huge_pages(usable: u64, timeout: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        if MemInfo::read().is_some_and(|m| m.usable() >= usable) {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24684000 kB\nAnonHugePages:         0 kB\nHugePages_Total:      16\nHugePages_Free:       12\nHugePages_Rsvd:        2\nHugePages_Surp:        0\nHugepagesize:       2048 kB\nHugetlb:           32768 kB\n";

    #[test]
    fn parses_the_hugetlb_lines_of_meminfo() {
        let m = MemInfo::parse(MEMINFO).unwrap();
        assert_eq!(m, MemInfo { total: 16, free: 12, reserved: 2, page_bytes: 2 << 20 });
        assert_eq!(m.usable(), 10);
        // AnonHugePages is not HugePages_*: a prefix match would be wrong.
        assert_eq!(MemInfo::parse("AnonHugePages: 0 kB\nHugepagesize: 2048 kB\n"), None);
    }

    #[test]
    fn counts_pages_and_the_reservation_needed() {
        let m = MemInfo::parse(MEMINFO).unwrap();
        assert_eq!(m.pages_for(16 << 20), 8);
        assert_eq!(m.pages_for((16 << 20) + 1), 9);
        // 10 usable: 8 more fit without reserving any.
        assert_eq!(m.nr_hugepages_for(8), 16);
        // 2 queues of 16 MiB: 16 pages, 6 short.
        assert_eq!(m.nr_hugepages_for(16), 22);
    }

    #[test]
    fn rounds_frames_up_to_whole_pages() {
        let page = 2 << 20;
        assert_eq!(frames_filling_pages(8192, 2048, page), 8192);
        assert_eq!(frames_filling_pages(1000, 2048, page), 1024);
        assert_eq!(frames_filling_pages(1025, 4096, page), 1536);
        assert_eq!(frames_filling_pages(1, 4096, page), 512);
    }

    #[test]
    fn names_the_reason_for_a_refused_zero_copy_bind() {
        assert_eq!(zero_copy_refusal(libc::EOPNOTSUPP), "EOPNOTSUPP: driver has no AF_XDP zero-copy support");
        assert!(zero_copy_refusal(libc::EINVAL).contains("frame size"));
        assert!(zero_copy_advice("eth1", 3).contains("ethtool -i eth1"));
        assert!(zero_copy_advice("eth1", 3).contains("queue 3"));
    }
}
