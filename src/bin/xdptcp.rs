//! The `xdptcp` command line.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use xdptcp::app::App;
use xdptcp::apps::{Discard, Echo, Http};
use xdptcp::runtime::{run_worker, Capture};
use xdptcp::sim::pcap::PcapSink;
use xdptcp::stack::{Shard, StackConfig};
use xdptcp::wire::EthernetAddress;
use xdptcp::xdp::{QueueConfig, SteerProgram, XdpMode, XskQueue, COUNTER_NAMES};

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
}

#[derive(Clone, Copy, ValueEnum)]
enum AppKind {
    Echo,
    Discard,
    Http,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Auto,
    Native,
    Generic,
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
    /// Write every frame received and sent to this pcap file.
    #[arg(long)]
    pcap: Option<PathBuf>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(s) => match s.app {
            AppKind::Echo => serve::<Echo>(&s),
            AppKind::Discard => serve::<Discard>(&s),
            AppKind::Http => serve::<Http>(&s),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xdptcp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_sys(iface: &str, file: &str) -> Result<String, String> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/{file}"))
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("interface {iface} not found ({e})"))
}

fn rx_queue_count(iface: &str) -> Result<u32, String> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{iface}/queues")).map_err(|e| format!("interface {iface} not found ({e})"))?;
    Ok(dir.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count().max(1) as u32)
}

fn secret() -> [u8; 16] {
    let mut key = [0u8; 16];
    if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid") {
        // A fresh random UUID per read: 122 random bits, enough for a key.
        for (i, b) in bytes.iter().filter(|b| b.is_ascii_hexdigit()).enumerate().take(32) {
            let v = (*b as char).to_digit(16).unwrap_or(0) as u8;
            key[i / 2] |= v << if i % 2 == 0 { 4 } else { 0 };
        }
    }
    key
}

fn serve<A: App + Default + Send + 'static>(s: &Serve) -> Result<(), String>
where
    A::State: Send,
{
    if not_root() {
        return Err("needs CAP_NET_ADMIN and CAP_BPF: run as root".into());
    }
    let (ip, prefix) = match s.ip.split_once('/') {
        Some((a, l)) => (a.parse::<Ipv4Addr>().map_err(|e| format!("--ip {a}: {e}"))?, l.parse::<u8>().map_err(|e| format!("--ip /{l}: {e}"))?),
        None => (s.ip.parse::<Ipv4Addr>().map_err(|e| format!("--ip {}: {e}", s.ip))?, 24),
    };
    let mac: EthernetAddress = read_sys(&s.iface, "address")?.parse().map_err(|_| format!("cannot read the MAC of {}", s.iface))?;
    let mtu: usize = read_sys(&s.iface, "mtu")?.parse().unwrap_or(1500);
    let available = rx_queue_count(&s.iface)?;
    let queues = s.queues.unwrap_or(available);
    if queues > available {
        return Err(format!("{} has {available} RX queue(s); --queues {queues} asks for more", s.iface));
    }
    if queues < available {
        log::warn!(
            "{} has {available} RX queues but only {queues} are served: traffic for {ip} that lands on queues {queues}..{} goes to the kernel",
            s.iface,
            available - 1
        );
    }
    let mode = match s.xdp_mode {
        Mode::Auto => XdpMode::Auto,
        Mode::Native => XdpMode::Native,
        Mode::Generic => XdpMode::Generic,
    };
    let mut program = SteerProgram::attach(&s.iface, ip, 0, mode).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    let key = secret();
    let mut cfg = StackConfig::new(mac, ip, prefix);
    cfg.gateway = s.gateway;
    cfg.mtu = mtu;
    cfg.tcp = xdptcp::tcp::Config::for_mtu(mtu);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut workers = Vec::new();
    // Sockets are created one after another, not in parallel.
    for q in 0..queues {
        let queue = XskQueue::open(&s.iface, q, QueueConfig::default()).map_err(|e| e.to_string())?;
        program.register(q, queue.fd()).map_err(|e| e.to_string())?;
        let mut shard = Shard::<A>::new(cfg.clone(), key);
        shard.listen(s.port);
        let core = s.cores.get(q as usize).copied().or_else(|| cores.get(q as usize % cores.len().max(1)).map(|c| c.id));
        let pcap: Option<Capture> = match &s.pcap {
            Some(p) => {
                let path = if queues > 1 { p.with_extension(format!("q{q}.pcap")) } else { p.clone() };
                Some(PcapSink::create(&path).map_err(|e| format!("--pcap {}: {e}", path.display()))?)
            }
            None => None,
        };
        let stop = stop.clone();
        workers.push(std::thread::Builder::new().name(format!("xdptcp-q{q}")).spawn(move || {
            if let Some(id) = core {
                core_affinity::set_for_current(core_affinity::CoreId { id });
            }
            let (shard, _app, queue) = run_worker(shard, A::default(), queue, &stop, pcap);
            (q, *shard.stats(), queue.stats())
        }).map_err(|e| e.to_string())?);
    }
    log::info!("serving {ip}:{} on {} with {queues} queue(s), XDP {:?} mode", s.port, s.iface, program.mode());
    for w in workers {
        if let Ok((q, stats, qs)) = w.join() {
            log::info!("queue {q}: {stats:?} {qs:?}");
        }
    }
    let counters = program.counters();
    log::info!("XDP counters: {}", COUNTER_NAMES.iter().zip(counters).map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" "));
    drop(program); // detaches
    log::info!("stopped; XDP program detached");
    Ok(())
}

/// True when we are not root (the stack needs CAP_NET_ADMIN and CAP_BPF).
fn not_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) != Some("0")))
        .unwrap_or(false)
}
