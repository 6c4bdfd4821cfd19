//! The `xdptcp` command line.
// serde_json::json! expands recursively per key; the stats row has many.
#![recursion_limit = "256"]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use xdptcp::app::App;
use xdptcp::apps::{Discard, Echo, EchoClient, Http, Source};
use xdptcp::capture::{Capture, PcapSink};
use xdptcp::host::{iface_mtu, read_sys, rx_queue_count, secret};
use xdptcp::runtime::{run_worker, Control, Handoff};
use xdptcp::stack::{Shard, StackConfig};
use xdptcp::xdp::{not_root, rss_steering, HugePages, MemInfo, QueueConfig, SteerProgram, XdpMode, XskQueue, ZeroCopy, COUNTER_NAMES};

#[path = "xdptcp/setup.rs"]
mod setup;
#[path = "xdptcp/stats.rs"]
mod stats;

use setup::{apply_mtu, parse_bytes, stack_config, Error, FlagError, HugePagesShort};
use stats::{format_ss, format_stats};

#[derive(Parser)]
#[command(name = "xdptcp", version, about = "A kernel-bypass TCP/IP stack on AF_XDP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve TCP on an interface through AF_XDP until SIGINT or SIGTERM.
    Serve(Serve),
    /// Open connections to an echo server, send verified data, check the echo.
    Connect(Connect),
    /// The live connection list, like `ss -tan`.
    Ss {
        /// Also cwnd, rtt, rto, mss and retransmits.
        #[arg(short = 'i')]
        info: bool,
        #[arg(long, default_value = DEFAULT_CONTROL)]
        control: PathBuf,
    },
    /// Counters per core and in total, like `netstat -s`.
    Stats {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_CONTROL)]
        control: PathBuf,
    },
}

const DEFAULT_CONTROL: &str = "/run/xdptcp.sock";

/// Set when the served interface disappeared (the exit is then an error).
static IFACE_GONE: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy, ValueEnum)]
enum AppKind {
    Echo,
    Discard,
    Http,
    Source,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Auto,
    Native,
    Generic,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ZeroCopyArg {
    Required,
    Preferred,
    Off,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HugePagesArg {
    Auto,
    On,
    Off,
}

/// How each queue's AF_XDP socket and UMEM are set up (serve and connect).
#[derive(clap::Args)]
struct XskArgs {
    /// AF_XDP zero-copy: `required` fails if the driver refuses it,
    /// `preferred` falls back to copy mode with a warning naming the reason,
    /// `off` binds copy mode. Zero-copy needs native XDP mode.
    #[arg(long, value_enum, default_value = "preferred")]
    zero_copy: ZeroCopyArg,
    /// UMEM on hugepages (MAP_HUGETLB): `auto` when enough are reserved and
    /// free, else normal pages with the `sysctl vm.nr_hugepages` to set;
    /// `on` fails without them; `off` never.
    #[arg(long, value_enum, default_value = "auto")]
    hugepages: HugePagesArg,
    /// UMEM frame size (bytes): 2048 or 4096 [default: 2048, or 4096 when
    /// the MTU needs multi-buffer AF_XDP].
    #[arg(long, value_parser = parse_frame_size)]
    frame_size: Option<u32>,
    /// UMEM frames per queue (rounded up to fill whole hugepages when on them).
    #[arg(long, value_name = "N", default_value_t = 8192, value_parser = clap::value_parser!(u32).range(512..=1 << 20))]
    frames: u32,
}

fn parse_frame_size(s: &str) -> Result<u32, FlagError> {
    match s {
        "2048" => Ok(2048),
        "4096" => Ok(4096),
        _ => Err(FlagError::FrameSize),
    }
}

impl XskArgs {
    fn zero_copy(&self) -> ZeroCopy {
        match self.zero_copy {
            ZeroCopyArg::Required => ZeroCopy::Required,
            ZeroCopyArg::Preferred => ZeroCopy::Preferred,
            ZeroCopyArg::Off => ZeroCopy::Off,
        }
    }

    /// The XDP mode to attach in: zero-copy needs native mode, so
    /// `--zero-copy required` turns `auto` into native and refuses generic
    /// up front, before anything is attached.
    fn xdp_mode(&self, m: Mode) -> Result<XdpMode, FlagError> {
        match (self.zero_copy, m) {
            (ZeroCopyArg::Required, Mode::Generic) => Err(FlagError::ZeroCopyGeneric),
            (ZeroCopyArg::Required, Mode::Auto) => Ok(XdpMode::Native),
            _ => Ok(xdp_mode(m)),
        }
    }

    /// Attaches the program in the mode `xdp_mode` picks; a refused native
    /// attach under `--zero-copy required` says why native was needed.
    fn attach(&self, iface: &str, ip: Ipv4Addr, m: Mode) -> Result<SteerProgram, Error> {
        let mode = self.xdp_mode(m)?;
        SteerProgram::attach(iface, ip, 1, 0, mode).map_err(|e| match self.zero_copy {
            ZeroCopyArg::Required => Error::NativeForZeroCopy(e),
            _ => Error::Program(e),
        })
    }

    /// The queue configuration, given the mode the program got: a program
    /// in generic mode gets copy-mode sockets (zero-copy needs native).
    /// The AF_XDP queues' configuration for the stack `stack` on `iface`.
    /// They take frames as large as the interface's MTU allows (the peer
    /// may send them, ICMP for one), whatever the stack sends with; above
    /// what one UMEM frame holds, packets span chains of frames
    /// (multi-buffer), with 4096-byte frames unless `--frame-size` says.
    fn queue_config(&self, iface: &str, program: XdpMode, queues: u32, stack: &StackConfig) -> Result<QueueConfig, Error> {
        let mut zero_copy = self.zero_copy();
        if program == XdpMode::Generic && zero_copy == ZeroCopy::Preferred {
            log::warn!("{iface}: the XDP program runs in generic mode and zero-copy needs native mode: binding copy mode (XDP_COPY)");
            zero_copy = ZeroCopy::Off;
        }
        let huge_pages = match self.hugepages {
            HugePagesArg::Auto => HugePages::Auto,
            HugePagesArg::On => HugePages::On,
            HugePagesArg::Off => HugePages::Off,
        };
        let link = iface_mtu(iface)?.max(stack.mtu) as u32;
        let frame_size = self.frame_size.unwrap_or(QueueConfig::for_mtu(link).frame_size);
        let cfg = QueueConfig { frames: self.frames, frame_size, zero_copy, huge_pages, mtu: link, ..QueueConfig::default() };
        if cfg.multi_buffer() {
            log::info!(
                "MTU {link} on {iface} (stack sends with {}, MSS {}): multi-buffer AF_XDP (XDP_USE_SG), packets over {} bytes span chains of UMEM frames",
                stack.mtu,
                stack.tcp.mss,
                cfg.frame_capacity()
            );
        }
        self.check_huge_pages(iface, &cfg, queues)?;
        Ok(cfg)
    }

    /// Says once, for all queues, whether the UMEMs fit on the hugepages
    /// free, and what to reserve if not (`on` fails then).
    fn check_huge_pages(&self, iface: &str, cfg: &QueueConfig, queues: u32) -> Result<(), Error> {
        if cfg.huge_pages == HugePages::Off {
            return Ok(());
        }
        let Some(mem) = MemInfo::read().filter(|m| m.page_bytes > 0) else {
            return if cfg.huge_pages == HugePages::On { Err(Error::NoHugetlb) } else { Ok(()) };
        };
        let frames = xdptcp::xdp::bind::frames_filling_pages(cfg.frames, cfg.frame_size, mem.page_bytes);
        let per_queue = mem.pages_for(u64::from(frames) * u64::from(cfg.frame_size));
        let need = per_queue * u64::from(queues);
        if mem.usable() >= need {
            log::info!("{iface}: UMEM on hugepages: {queues} queue(s) × {per_queue} pages of {} kB ({} free)", mem.page_bytes / 1024, mem.usable());
            return Ok(());
        }
        let msg = HugePagesShort {
            queues,
            umem_mib: (u64::from(frames) * u64::from(cfg.frame_size)) >> 20,
            need,
            page_kib: mem.page_bytes / 1024,
            free: mem.usable(),
            reserve: mem.nr_hugepages_for(need),
        };
        if cfg.huge_pages == HugePages::On {
            return Err(Error::HugePagesShort(msg));
        }
        log::warn!("{iface}: UMEM on normal pages: {msg}");
        Ok(())
    }
}

#[derive(clap::Args)]
struct Connect {
    #[arg(long)]
    iface: String,
    /// The address xdptcp owns, ADDR[/LEN] (default /24).
    #[arg(long)]
    ip: String,
    #[arg(long)]
    gateway: Option<Ipv4Addr>,
    /// The echo server, ADDR:PORT.
    #[arg(long)]
    remote: std::net::SocketAddrV4,
    /// Bytes to send (and get back) per connection.
    #[arg(long, default_value_t = 1 << 20)]
    bytes: usize,
    /// Connections, opened at once.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: Mode,
    #[arg(long)]
    pcap: Option<PathBuf>,
    #[command(flatten)]
    xsk: XskArgs,
    /// The MTU to send with (MSS = MTU − 40) [default: the interface's].
    #[arg(long)]
    mtu: Option<usize>,
}

#[derive(clap::Args)]
struct Serve {
    /// The interface to take traffic from.
    #[arg(long)]
    iface: String,
    /// The address xdptcp owns, ADDR[/LEN] (default /24).
    #[arg(long)]
    ip: String,
    /// Next hop for off-link destinations.
    #[arg(long)]
    gateway: Option<Ipv4Addr>,
    /// The TCP port to listen on.
    #[arg(long)]
    port: u16,
    /// What to serve.
    #[arg(long, value_enum)]
    app: AppKind,
    /// RX queues to serve (default: all of the device's).
    #[arg(long)]
    queues: Option<u32>,
    /// Cores to pin workers to, e.g. 0,1 (default: one per queue, in order).
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: Mode,
    #[command(flatten)]
    xsk: XskArgs,
    /// The MTU to send with (MSS = MTU − 40), at most the interface's
    /// [default: the interface's]. Above 2034 packets span several UMEM
    /// frames (multi-buffer AF_XDP).
    #[arg(long)]
    mtu: Option<usize>,
    /// Write every frame received and sent to this pcap file.
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// The control socket `xdptcp ss` and `xdptcp stats` talk to.
    #[arg(long, default_value = DEFAULT_CONTROL)]
    control: PathBuf,
    /// Preferred busy polling of the NIC queue (SO_PREFER_BUSY_POLL,
    /// SO_BUSY_POLL=USECS, SO_BUSY_POLL_BUDGET=64), driven by the workers.
    /// For NICs whose driver runs NAPI per queue; pair it with the device's
    /// napi_defer_hard_irqs and gro_flush_timeout.
    #[arg(long, value_name = "USECS")]
    busy_poll: Option<u32>,
    /// Connections per core, TIME_WAIT included; SYNs beyond it are
    /// refused with a RST [default: 2097152].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Send buffer per connection (bytes; K, M, G suffixes) [default: 4M].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    send_buffer: Option<usize>,
    /// Receive buffer per connection, out-of-order data included; the
    /// largest window advertised (bytes) [default: 4M].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    recv_buffer: Option<usize>,
    /// Out-of-order data held per core, all connections together; beyond
    /// it out-of-order segments are dropped (bytes) [default: 64M].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    reassembly_limit: Option<usize>,
    /// Receive and send memory per core (unread and out-of-order data, and
    /// unacknowledged sent data, of all connections), like tcp_mem: windows
    /// are clamped from 3/4 of it; at it they stop growing, sends are cut
    /// short and orphans holding send data are reset (bytes) [default: 1G].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    memory_limit: Option<usize>,
    /// Orphans per core (connections closed by the application and still
    /// finishing), like tcp_max_orphans: a close beyond it resets the
    /// connection [default: 65536].
    #[arg(long, value_name = "N")]
    max_orphans: Option<usize>,
}

impl Serve {
    /// The resource caps given on the command line, over the defaults.
    fn apply_caps(&self, cfg: &mut StackConfig) -> Result<(), FlagError> {
        let nonzero = |flag: &'static str, v: usize| if v == 0 { Err(FlagError::Zero(flag)) } else { Ok(v) };
        if let Some(n) = self.max_connections {
            cfg.max_connections = nonzero("--max-connections", n)?;
        }
        if let Some(n) = self.send_buffer {
            cfg.tcp.send_buffer = nonzero("--send-buffer", n)?;
        }
        if let Some(n) = self.recv_buffer {
            // RFC 7323 §2.3: a window scale of 14 reaches 1 GiB at most.
            if n > 1 << 30 {
                return Err(FlagError::RecvBufferOver1G);
            }
            cfg.tcp.recv_buffer = nonzero("--recv-buffer", n)?;
        }
        if let Some(n) = self.reassembly_limit {
            cfg.reassembly_limit = n;
        }
        if let Some(n) = self.memory_limit {
            cfg.memory_limit = nonzero("--memory-limit", n)?;
        }
        if let Some(n) = self.max_orphans {
            // 0 is allowed, as in Linux: every close with anything left to
            // do resets.
            cfg.max_orphans = n;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(s) => match s.app {
            AppKind::Echo => serve::<Echo>(&s),
            AppKind::Discard => serve::<Discard>(&s),
            AppKind::Http => serve::<Http>(&s),
            AppKind::Source => serve::<Source>(&s),
        },
        Command::Connect(c) => connect(&c),
        Command::Ss { info, control } => query(&control, if info { "ss -i" } else { "ss" }),
        Command::Stats { json, control } => query(&control, if json { "stats --json" } else { "stats" }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xdptcp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn xdp_mode(m: Mode) -> XdpMode {
    match m {
        Mode::Auto => XdpMode::Auto,
        Mode::Native => XdpMode::Native,
        Mode::Generic => XdpMode::Generic,
    }
}

/// Logs the mode the kernel bound a queue's socket in (read back from it)
/// and where its UMEM sits.
fn log_bind(iface: &str, queue: &XskQueue) {
    let q = queue.queue_id();
    let u = queue.umem_info();
    let pages = if u.huge_pages { "hugepages" } else { "normal pages" };
    match queue.zero_copy() {
        Ok(zc) => log::info!(
            "{iface} queue {q}: AF_XDP socket bound in {} mode; UMEM {} KiB, {} frames of {} B on {pages}",
            if zc { "zero-copy" } else { "copy" },
            u.bytes >> 10,
            u.frames,
            u.frame_size
        ),
        Err(e) => log::warn!("{iface} queue {q}: cannot read the AF_XDP bind mode: {e}"),
    }
}

fn open_capture(path: &Option<PathBuf>, queue: u32, queues: u32) -> Result<Option<Capture>, Error> {
    let Some(p) = path else { return Ok(None) };
    let path = if queues > 1 { p.with_extension(format!("q{queue}.pcap")) } else { p.clone() };
    PcapSink::create(&path).map(Some).map_err(|source| Error::Pcap { path, source })
}

fn connect(c: &Connect) -> Result<(), Error> {
    if not_root() {
        return Err(Error::NotRoot);
    }
    let mut cfg = stack_config(&c.iface, &c.ip, c.gateway)?;
    apply_mtu(&mut cfg, &c.iface, c.mtu)?;
    let queues = rx_queue_count(&c.iface)?;
    let mut program = c.xsk.attach(&c.iface, cfg.ip, c.xdp_mode)?;
    let qcfg = c.xsk.queue_config(&c.iface, program.mode(), queues, &cfg)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(Error::Os)?;
    }
    let key = secret();
    // Where the NIC steers replies: queue 0 opens every connection, from
    // ports whose replies land on it when the steering is known.
    let (rss, line) = rss_steering(&c.iface);
    log::info!("{line}");
    // Every queue gets a worker; queue 0's opens the connections, and replies
    // landing on other queues are handed to it over the ring.
    let mut ring = Handoff::ring_sized(queues as usize, xdptcp::runtime::handoff::SLOTS, qcfg.mtu as usize + 14).into_iter();
    let mut helpers = Vec::new();
    let mut first = None;
    for q in 0..queues {
        let queue = XskQueue::open(&c.iface, q, qcfg)?;
        log_bind(&c.iface, &queue);
        program.register(q, queue.fd())?;
        let handoff = ring.next().expect("one per queue");
        let mut cfg = cfg.clone();
        cfg.rss = rss.as_ref().map(|r| r.for_queue(q));
        cfg.single_queue = queues == 1;
        cfg.cores = xdptcp::stack::Cores { index: q as u16, count: queues as u16 };
        let shard = Shard::<EchoClient>::new(cfg, key);
        if q == 0 {
            first = Some((shard, queue, handoff));
            continue;
        }
        let stop = stop.clone();
        helpers.push(std::thread::spawn(move || {
            let (_tx, rx) = crossbeam::channel::unbounded();
            let app = EchoClient::new(0, usize::MAX, None);
            let _ = run_worker(shard, app, queue, &stop, None, rx, handoff);
        }));
    }
    let (mut shard, queue, handoff) = first.ok_or(Error::NoQueues)?;
    for _ in 0..c.conns {
        shard.connect(xdptcp::time::Instant::ZERO, c.remote)?;
    }
    let timer = {
        let stop = stop.clone();
        let secs = c.timeout;
        std::thread::spawn(move || {
            let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
            while std::time::Instant::now() < end && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let app = EchoClient::new(c.bytes, c.conns, Some(stop.clone()));
    let (_ctl_tx, ctl_rx) = crossbeam::channel::unbounded();
    let pcap = open_capture(&c.pcap, 0, 1)?;
    let (shard, app, queue) = run_worker(shard, app, queue, &stop, pcap, ctl_rx, handoff);
    let xs = queue.stats();
    println!(
        "largest frame received {} B, sent {} B; chains received {}, sent {} (MTU {}, MSS {})",
        xs.rx_largest, xs.tx_largest, xs.rx_chains, xs.tx_chains, cfg.mtu, cfg.tcp.mss
    );
    let _ = timer.join();
    for h in helpers {
        let _ = h.join();
    }
    drop(program);
    log::info!("{:?}", shard.stats());
    println!("{} of {} connections echoed {} bytes, verified ({} failed)", app.verified, c.conns, c.bytes, app.failed);
    if app.verified == c.conns { Ok(()) } else { Err(Error::NotEchoed) }
}

fn serve<A: App + Default + Send + 'static>(s: &Serve) -> Result<(), Error>
where
    A::State: Send,
{
    if not_root() {
        return Err(Error::NotRoot);
    }
    let mut cfg = stack_config(&s.iface, &s.ip, s.gateway)?;
    s.apply_caps(&mut cfg)?;
    apply_mtu(&mut cfg, &s.iface, s.mtu)?;
    let ip = cfg.ip;
    let available = rx_queue_count(&s.iface)?;
    let queues = s.queues.unwrap_or(available);
    if queues > available {
        return Err(Error::TooManyQueues { iface: s.iface.clone(), available, queues });
    }
    if queues < available {
        log::warn!(
            "{} has {available} RX queues but only {queues} are served: traffic for {ip} that lands on queues {queues}..{} goes to the kernel",
            s.iface,
            available - 1
        );
    }
    let mut program = s.xsk.attach(&s.iface, ip, s.xdp_mode)?;
    let qcfg = s.xsk.queue_config(&s.iface, program.mode(), queues, &cfg)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(Error::Os)?;
    }
    let key = secret();
    // Read once; each shard gets the steering as its own queue sees it.
    let (rss, line) = rss_steering(&s.iface);
    log::info!("{line}");
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut workers = Vec::new();
    let mut controls = Vec::new();
    let mut ring = Handoff::ring_sized(queues as usize, xdptcp::runtime::handoff::SLOTS, qcfg.mtu as usize + 14).into_iter();
    // Sockets are created one after another, not in parallel.
    for q in 0..queues {
        let mut queue = XskQueue::open(&s.iface, q, qcfg)?;
        program.register(q, queue.fd())?;
        if let Some(usecs) = s.busy_poll {
            match queue.enable_busy_poll(usecs, 64) {
                Ok(()) => log::info!("{} queue {q}: preferred busy polling on ({usecs} µs, budget 64)", s.iface),
                Err(e) => log::warn!("{} queue {q}: busy polling refused ({e}); continuing without it", s.iface),
            }
        }
        log_bind(&s.iface, &queue);
        let mut scfg = cfg.clone();
        scfg.rss = rss.as_ref().map(|r| r.for_queue(q));
        scfg.single_queue = queues == 1;
        scfg.cores = xdptcp::stack::Cores { index: q as u16, count: queues as u16 };
        let mut shard = Shard::<A>::new(scfg, key);
        shard.listen(s.port);
        let core = s.cores.get(q as usize).copied().or_else(|| cores.get(q as usize % cores.len().max(1)).map(|c| c.id));
        let pcap = open_capture(&s.pcap, q, queues)?;
        let stop = stop.clone();
        let (ctl_tx, ctl_rx) = crossbeam::channel::unbounded();
        controls.push(ctl_tx);
        let handoff = ring.next().expect("one per queue");
        workers.push(std::thread::Builder::new().name(format!("xdptcp-q{q}")).spawn(move || {
            if let Some(id) = core {
                core_affinity::set_for_current(core_affinity::CoreId { id });
            }
            let (shard, _app, queue) = run_worker(shard, A::default(), queue, &stop, pcap, ctl_rx, handoff);
            (q, *shard.stats(), queue.stats())
        }).map_err(Error::Os)?);
    }
    log::info!("serving {ip}:{} on {} with {queues} queue(s), XDP {:?} mode", s.port, s.iface, program.mode());
    serve_control(&s.control, &s.iface, &controls, &program, &stop);
    for w in workers {
        if let Ok((q, stats, qs)) = w.join() {
            log::info!("queue {q}: {stats:?} {qs:?}");
        }
    }
    let counters = program.counters();
    log::info!("XDP counters: {}", COUNTER_NAMES.iter().zip(counters).map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" "));
    drop(program); // detaches
    if IFACE_GONE.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::InterfaceGone(s.iface.clone()));
    }
    log::info!("stopped; XDP program detached");
    Ok(())
}

/// Answers `ss` and `stats` on the control socket until `stop`.
fn serve_control(path: &std::path::Path, iface: &str, workers: &[crossbeam::channel::Sender<Control>], program: &SteerProgram, stop: &AtomicBool) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::Ordering;
    let _ = std::fs::remove_file(path);
    let listener = match std::os::unix::net::UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) => {
            log::warn!("control socket {}: {e}; `xdptcp ss` and `stats` will not work", path.display());
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            return;
        }
    };
    let _ = listener.set_nonblocking(true);
    let mut last_check = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if last_check.elapsed() >= std::time::Duration::from_secs(1) {
            last_check = std::time::Instant::now();
            if read_sys(iface, "ifindex").is_err() {
                log::error!("interface {iface} is gone; stopping");
                IFACE_GONE.store(true, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
                break;
            }
        }
        let Ok((stream, _)) = listener.accept() else {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let reply = match line.trim() {
            "ss" => format_ss(&collect(workers, Control::Connections), false),
            "ss -i" => format_ss(&collect(workers, Control::Connections), true),
            "stats" => format_stats(&collect(workers, Control::Stats), program, false),
            "stats --json" => format_stats(&collect(workers, Control::Stats), program, true),
            other => format!("unknown request {other:?}\n"),
        };
        let _ = (&stream).write_all(reply.as_bytes());
    }
    let _ = std::fs::remove_file(path);
}

/// Asks every worker and gathers the answers (in queue order).
fn collect<T: Send>(workers: &[crossbeam::channel::Sender<Control>], make: fn(crossbeam::channel::Sender<T>) -> Control) -> Vec<T> {
    let mut out = Vec::new();
    for w in workers {
        let (tx, rx) = crossbeam::channel::bounded(1);
        if w.send(make(tx)).is_ok() {
            if let Ok(v) = rx.recv_timeout(std::time::Duration::from_secs(1)) {
                out.push(v);
            }
        }
    }
    out
}

/// Sends one request to a running `xdptcp serve` and prints the answer.
fn query(path: &std::path::Path, request: &str) -> Result<(), Error> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|source| Error::NoServer { path: path.to_path_buf(), source })?;
    s.write_all(format!("{request}\n").as_bytes()).map_err(Error::Control)?;
    s.shutdown(std::net::Shutdown::Write).ok();
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(Error::Control)?;
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn setup_errors_keep_their_messages_and_sources() {
        assert_eq!(Error::NotRoot.to_string(), "needs CAP_NET_ADMIN and CAP_BPF: run as root");
        let e = Error::Pcap { path: "/x/y.pcap".into(), source: io::Error::from(io::ErrorKind::NotFound) };
        assert_eq!(e.to_string(), "--pcap /x/y.pcap: entity not found");
        assert!(std::error::Error::source(&e).is_some());
        let e = open_capture(&Some("/nonexistent-dir/c.pcap".into()), 1, 2).err().expect("no such directory");
        assert!(matches!(&e, Error::Pcap { path, .. } if path.to_str() == Some("/nonexistent-dir/c.q1.pcap")), "{e:?}");
        let short = HugePagesShort { queues: 2, umem_mib: 16, need: 16, page_kib: 2048, free: 10, reserve: 22 };
        assert_eq!(
            Error::HugePagesShort(short).to_string(),
            "--hugepages on: 2 UMEM(s) of 16 MiB need 16 hugepages of 2048 kB, 10 free; reserve them with `sysctl vm.nr_hugepages=22`"
        );
        assert!(FlagError::ZeroCopyGeneric.to_string().contains("needs the XDP program in native (driver) mode, but --xdp-mode generic was given"));
        let e = Error::TooManyQueues { iface: "eth1".into(), available: 2, queues: 4 };
        assert_eq!(e.to_string(), "eth1 has 2 RX queue(s); --queues 4 asks for more");
        let e = Error::from(xdptcp::host::rx_queue_count("xdptcp-nonexist").unwrap_err());
        assert!(e.to_string().starts_with("interface xdptcp-nonexist not found ("), "{e}");
    }
}
