//! `xdptcp-bench`: xdptcp's load generator, and the kernel-side server it
//! is compared against.
//!
//!   xdptcp-bench server --stack kernel --listen 198.18.0.1:7 --app echo
//!   xdptcp-bench rr --stack kernel --server 198.18.0.1:7 --conns 1 --msg-bytes 64
//!   xdptcp-bench crr --stack xdp --iface veth1 --ip 198.18.0.3/24 --server 198.18.0.1:7
//!
//! A run prints a human summary and, with `--json FILE`, appends one record
//! in the format of `bench/results/latest.json`'s `runs`.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use xdptcp_bench::kernel::{self, Progress, ServerApp};
use xdptcp_bench::load::{cpu_seconds, rss_bytes, slab_bytes, Direction, Meter, Outcome, Probe, Spec, Workload};
use xdptcp_bench::report;
use xdptcp_bench::xdp::{self as xdpc, XdpClient};

#[derive(Parser)]
#[command(name = "xdptcp-bench", version, about = "xdptcp's load generator: xdptcp against kernel TCP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Kernel TCP server (epoll, one thread per core, SO_REUSEPORT), speaking
    /// the same protocols as `xdptcp serve`.
    Server(ServerArgs),
    /// Bulk throughput over N connections, either direction.
    Stream(RunArgs),
    /// Request/response over N persistent connections (closed loop, or open
    /// loop with --rate).
    Rr(RunArgs),
    /// Connect, one request/response, close; connections per second.
    Crr(RunArgs),
    /// Open N connections and hold them; memory per connection.
    Hold(RunArgs),
    /// The raw AF_XDP frame rate (the I/O limit): `rx` steers frames for
    /// --ip into an AF_XDP socket and drops them, counting; `tx` sends
    /// minimum-size frames to --to/--to-mac as fast as it can.
    Frames(FramesArgs),
    /// The impairment relay: forwards every frame between --a and --b (in
    /// a namespace of its own) with delay, jitter, loss, reordering,
    /// duplication, corruption and a rate limit, until SIGINT/SIGTERM or
    /// --duration. Prints what it did to each direction.
    Relay(RelayArgs),
    /// Print the comparison table of a results file, and draw it as SVG.
    Report {
        file: PathBuf,
        #[arg(long)]
        svg: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StackKind {
    Kernel,
    Xdp,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Auto,
    Native,
    Generic,
}

#[derive(Args)]
struct ServerArgs {
    /// Only the kernel server lives here; the xdptcp server is `xdptcp serve`.
    #[arg(long, value_enum, default_value = "kernel")]
    stack: StackKind,
    /// Address and port to listen on.
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long, value_enum)]
    app: ServerApp,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Cores to pin the threads to, in order (comma-separated).
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[arg(long, value_enum)]
    stack: StackKind,
    /// The server: ADDR:PORT.
    #[arg(long)]
    server: SocketAddrV4,
    /// Connections (crr: connections in flight at once).
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Request and response size (rr, crr).
    #[arg(long, default_value_t = 64)]
    msg_bytes: usize,
    /// rr: open loop at this many requests per second in total.
    #[arg(long)]
    rate: Option<f64>,
    /// stream: up (client sends, server runs discard) or down (server runs source).
    #[arg(long, value_enum, default_value = "up")]
    dir: Direction,
    /// Seconds before measuring (hold: the longest wait for every connection to open).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured (hold: how long every connection is held).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// hold: handshakes in flight at once.
    #[arg(long, default_value_t = 1024)]
    concurrency: usize,
    /// Kernel client threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Cores for the client's threads (xdp: the worker's core).
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// xdp: the interface the client stack runs on.
    #[arg(long)]
    iface: Option<String>,
    /// xdp: the client's address, ADDR[/LEN].
    #[arg(long)]
    ip: Option<String>,
    /// xdp: consecutive client addresses from --ip up (more than 64k connections).
    #[arg(long, default_value_t = 1)]
    addresses: u32,
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: Mode,
    /// The server's process, for its CPU time and (hold) memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// What the server is: kernel or xdptcp (recorded; hold measures a kernel
    /// server's memory from the slab, xdptcp's from its RSS).
    #[arg(long, value_enum, default_value = "kernel")]
    server_stack: ServerStack,
    /// Free text recorded with the run (e.g. "offloads off").
    #[arg(long)]
    label: Option<String>,
    /// Append the run's record to this JSON file (created if missing).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct FramesArgs {
    #[arg(value_enum)]
    role: FrameRole,
    #[arg(long)]
    iface: String,
    /// Our address, ADDR[/LEN].
    #[arg(long)]
    ip: String,
    /// tx: the receiver's address and MAC.
    #[arg(long)]
    to: Option<std::net::Ipv4Addr>,
    #[arg(long)]
    to_mac: Option<String>,
    /// tx: frame size in bytes, Ethernet header included (64 … 1514).
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: Mode,
    #[arg(long)]
    core: Option<usize>,
    /// flood: what to send.
    #[arg(long, value_enum, default_value = "syn")]
    flood: xdptcp_bench::frames::Flood,
    /// flood: the target port.
    #[arg(long, default_value_t = 7)]
    port: u16,
    /// flood blind: the attacked connection's peer, whose address and port
    /// the attack forges.
    #[arg(long)]
    spoof: Option<std::net::SocketAddrV4>,
    /// rx: record the rate in this results file (as "io_limit", or
    /// "io_limit_mtu" with --size 1000 or more: give rx the sender's --size).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct RelayArgs {
    /// One side: frames from it go out on --b.
    #[arg(long)]
    a: String,
    /// The other side: frames from it go out on --a.
    #[arg(long)]
    b: String,
    /// One-way delay, milliseconds.
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Each frame's delay varies by up to ± this many milliseconds.
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Percent of frames lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Percent of frames sent without the delay, ahead of earlier ones.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Percent of frames sent twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Percent of frames with one bit flipped past the Ethernet header.
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    /// Percent of pure ACKs (no payload, no SYN/FIN/RST) lost, on top of
    /// --loss: window updates and cumulative ACKs.
    #[arg(long, default_value_t = 0.0)]
    ack_loss: f64,
    /// Rate limit in Mbit/s per direction (0: none).
    #[arg(long, default_value_t = 0.0)]
    rate_mbit: f64,
    /// Frames the rate limiter queues at most before dropping.
    #[arg(long, default_value_t = 1000)]
    queue: usize,
    /// Seed of the impairments' random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many seconds (default: run until a signal).
    #[arg(long)]
    duration: Option<f64>,
    #[arg(long, value_enum, default_value = "generic")]
    xdp_mode: Mode,
    #[arg(long)]
    core: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FrameRole {
    Rx,
    Tx,
    /// Send every frame back (MACs and addresses swapped).
    Reflect,
    /// One 130-byte frame at a time to a reflector: the link's round trip.
    Ping,
    /// Attack traffic at the highest rate the link takes (--flood syn|junk).
    Flood,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServerStack {
    Kernel,
    Xdptcp,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(a) => server(a),
        Command::Stream(a) => run(Workload::Stream, a),
        Command::Rr(a) => run(Workload::Rr, a),
        Command::Crr(a) => run(Workload::Crr, a),
        Command::Hold(a) => run(Workload::Hold, a),
        Command::Frames(a) => frames(a),
        Command::Relay(a) => relay(a),
        Command::Report { file, svg } => report_file(&file, svg.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xdptcp-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn server(a: ServerArgs) -> Result<(), String> {
    if a.stack != StackKind::Kernel {
        return Err("the xdptcp server is `xdptcp serve`; `xdptcp-bench server` is the kernel's".into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    kernel::serve(a.listen, a.app, a.threads, &a.cores, stop)
}

fn relay(a: RelayArgs) -> Result<(), String> {
    use xdptcp_bench::relay::{self, Impairments};
    let pct = |name: &str, v: f64| if (0.0..=100.0).contains(&v) { Ok(v / 100.0) } else { Err(format!("--{name} is a percentage (0 to 100), not {v}")) };
    let ms = |name: &str, v: f64| if v >= 0.0 && v.is_finite() { Ok(Duration::from_secs_f64(v / 1000.0)) } else { Err(format!("--{name} must be a non-negative number of milliseconds")) };
    let cfg = Impairments {
        delay: ms("delay-ms", a.delay_ms)?,
        jitter: ms("jitter-ms", a.jitter_ms)?,
        loss: pct("loss", a.loss)?,
        reorder: pct("reorder", a.reorder)?,
        duplicate: pct("duplicate", a.duplicate)?,
        corrupt: pct("corrupt", a.corrupt)?,
        ack_loss: pct("ack-loss", a.ack_loss)?,
        rate_bps: (a.rate_mbit.max(0.0) * 1e6) as u64,
        queue: a.queue.max(1),
    };
    if cfg.jitter > cfg.delay {
        return Err("--jitter-ms may not exceed --delay-ms (a frame cannot leave before it arrived)".into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    eprintln!("relay: {} <-> {}: {cfg:?}, seed {}", a.a, a.b, a.seed);
    let duration = a.duration.map(Duration::from_secs_f64);
    let (ab, ba) = relay::run(&a.a, &a.b, cfg, a.seed, xdp_mode(a.xdp_mode), a.core, duration, &stop)?;
    for (dir, s) in [(format!("{} -> {}", a.a, a.b), ab), (format!("{} -> {}", a.b, a.a), ba)] {
        println!(
            "relay {dir}: in {} out {} lost {} acks_lost {} duplicated {} corrupted {} reordered {} queue_drops {} in_flight {}",
            s.frames_in, s.frames_out, s.lost, s.acks_lost, s.duplicated, s.corrupted, s.reordered, s.queue_drops, s.in_flight
        );
    }
    Ok(())
}

fn xdp_mode(m: Mode) -> xdptcp::xdp::XdpMode {
    match m {
        Mode::Auto => xdptcp::xdp::XdpMode::Auto,
        Mode::Native => xdptcp::xdp::XdpMode::Native,
        Mode::Generic => xdptcp::xdp::XdpMode::Generic,
    }
}

fn frames(a: FramesArgs) -> Result<(), String> {
    let duration = Duration::from_secs_f64(a.duration);
    let mode = xdp_mode(a.xdp_mode);
    match a.role {
        FrameRole::Rx => {
            let r = xdptcp_bench::frames::rxdrop(&a.iface, &a.ip, mode, a.core, duration)?;
            println!("rxdrop: {} frames in {:.2} s = {:.3} Mpps", r.frames, r.seconds, r.per_second() / 1e6);
            if let Some(path) = &a.json {
                let mut doc = read_doc(path);
                let key = if a.size >= 1000 { "io_limit_mtu" } else { "io_limit" };
                doc[key] = json!({ "rx_frames_per_s": r.per_second(), "frame_bytes": a.size, "what": "AF_XDP rxdrop of frames sent by AF_XDP txonly on the same veth pair" });
                write_doc(path, &doc)?;
            }
            if r.frames == 0 {
                return Err("no frames arrived".into());
            }
        }
        FrameRole::Reflect => {
            let r = xdptcp_bench::frames::reflect(&a.iface, &a.ip, mode, a.core, duration)?;
            println!("reflect: {} frames in {:.2} s", r.frames, r.seconds);
        }
        FrameRole::Ping => {
            let to = a.to.ok_or("ping needs --to")?;
            let mac: xdptcp::wire::EthernetAddress = a.to_mac.as_deref().ok_or("ping needs --to-mac")?.parse().map_err(|_| "bad --to-mac")?;
            let h = xdptcp_bench::frames::pingpong(&a.iface, &a.ip, to, mac, mode, a.core, duration)?;
            let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
            println!("pingpong: {} round trips, p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} µs", h.len(), q(0.5), q(0.9), q(0.99), q(0.999));
            if let Some(path) = &a.json {
                let mut doc = read_doc(path);
                doc["io_round_trip"] = json!({ "p50_us": q(0.5), "p99_us": q(0.99), "frame_bytes": 130, "what": "one AF_XDP frame bounced by an AF_XDP reflector on the same veth pair, no TCP" });
                write_doc(path, &doc)?;
            }
            if h.is_empty() {
                return Err("no frame came back".into());
            }
        }
        FrameRole::Flood => {
            let to = a.to.ok_or("flood needs --to")?;
            let mac: xdptcp::wire::EthernetAddress = a.to_mac.as_deref().ok_or("flood needs --to-mac")?.parse().map_err(|_| "bad --to-mac")?;
            let r = xdptcp_bench::frames::flood(&a.iface, &a.ip, to, mac, a.port, a.flood, a.spoof, mode, a.core, duration)?;
            println!("flood: {} frames in {:.2} s = {:.3} Mpps", r.frames, r.seconds, r.per_second() / 1e6);
        }
        FrameRole::Tx => {
            let to = a.to.ok_or("tx needs --to")?;
            let mac: xdptcp::wire::EthernetAddress = a.to_mac.as_deref().ok_or("tx needs --to-mac")?.parse().map_err(|_| "bad --to-mac")?;
            let r = xdptcp_bench::frames::txonly(&a.iface, &a.ip, to, mac, a.size, mode, a.core, duration)?;
            println!("txonly: {} frames in {:.2} s = {:.3} Mpps", r.frames, r.seconds, r.per_second() / 1e6);
        }
    }
    Ok(())
}

fn report_file(file: &std::path::Path, svg: Option<&std::path::Path>) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    print!("{}", report::table(&doc));
    if let Some(path) = svg {
        report::svg(&doc, path)?;
    }
    Ok(())
}

/// Memory per connection on the server at the end of a hold: xdptcp's RSS
/// growth, or for a kernel server the growth of the kernel's slab (where
/// sockets live), halved when the client's sockets are in the same kernel.
fn probe(a: &RunArgs) -> Probe {
    let pid = a.server_pid;
    match a.server_stack {
        ServerStack::Xdptcp => {
            let base = pid.and_then(rss_bytes);
            Arc::new(move |conns| {
                let now = rss_bytes(pid?)?;
                Some((now.saturating_sub(base?)) as f64 / conns.max(1) as f64)
            })
        }
        ServerStack::Kernel => {
            let base = slab_bytes();
            let share = if a.stack == StackKind::Kernel { 2.0 } else { 1.0 };
            Arc::new(move |conns| {
                let now = slab_bytes()?;
                Some((now.saturating_sub(base?)) as f64 / conns.max(1) as f64 / share)
            })
        }
    }
}

fn run(workload: Workload, a: RunArgs) -> Result<(), String> {
    let spec = Spec {
        workload,
        conns: a.conns.max(1),
        msg_bytes: a.msg_bytes.max(1),
        rate: a.rate,
        direction: a.dir,
        warmup: Duration::from_secs_f64(a.warmup),
        duration: Duration::from_secs_f64(a.duration),
        concurrency: a.concurrency.max(1),
    };
    let progress = Arc::new(Progress::default());
    let done = Arc::new(AtomicBool::new(false));
    let bar = (!a.quiet && a.warmup + a.duration > 3.0).then(|| progress_bar(workload, &spec, progress.clone(), done.clone()));
    let me = std::process::id();
    let cpu0 = (cpu_seconds(me), a.server_pid.and_then(cpu_seconds));
    let probe = probe(&a);
    let started = Instant::now();
    let result = match a.stack {
        StackKind::Kernel => Ok(kernel::run_client(&spec, SocketAddr::V4(a.server), a.threads, &a.cores, progress, probe)),
        StackKind::Xdp => {
            let client = XdpClient {
                iface: a.iface.clone().ok_or("--stack xdp needs --iface")?,
                ip: a.ip.clone().ok_or("--stack xdp needs --ip")?,
                addresses: a.addresses,
                mode: xdp_mode(a.xdp_mode),
                core: a.cores.first().copied(),
            };
            xdpc::run_client(&spec, a.server, &client, progress, probe)
        }
    };
    done.store(true, Ordering::Relaxed);
    if let Some(b) = bar {
        let _ = b.join();
    }
    let (meter, out) = result?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = (
        cpu_seconds(me).zip(cpu0.0).map(|(b, a)| b - a),
        a.server_pid.and_then(cpu_seconds).zip(cpu0.1).map(|(b, a)| b - a),
    );
    let rec = record(workload, &a, &spec, &meter, &out, cpu, wall);
    println!("{}", summary(&rec));
    if let Some(path) = &a.json {
        append(path, rec)?;
    }
    Ok(())
}

fn progress_bar(workload: Workload, spec: &Spec, p: Arc<Progress>, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let total = spec.warmup + spec.duration;
    std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let t0 = Instant::now();
        while !done.load(Ordering::Relaxed) {
            let el = t0.elapsed();
            bar.set_position((el.as_millis() as u64).min(total.as_millis() as u64));
            bar.set_message(format!(
                "{} conns {}  ops {}  MB {}",
                workload.name(),
                p.conns.load(Ordering::Relaxed),
                p.ops.load(Ordering::Relaxed),
                p.bytes.load(Ordering::Relaxed) / 1_000_000
            ));
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    })
}

fn us(meter: &Meter, q: f64) -> Value {
    if meter.latency.is_empty() {
        return Value::Null;
    }
    json!((meter.latency.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0)
}

#[allow(clippy::too_many_arguments)]
fn record(workload: Workload, a: &RunArgs, spec: &Spec, meter: &Meter, out: &Outcome, cpu: (Option<f64>, Option<f64>), wall: f64) -> Value {
    let secs = out.seconds.max(1e-9);
    let stream = workload == Workload::Stream;
    let per_op = |c: Option<f64>| -> Value {
        let ops = match workload {
            Workload::Stream => out.bytes as f64 / 1e6,
            Workload::Hold => out.conns as f64,
            _ => out.ops as f64,
        };
        match c {
            Some(c) if ops > 0.0 => json!(c / ops * 1e6),
            _ => Value::Null,
        }
    };
    let client = match a.stack {
        StackKind::Kernel => "kernel",
        StackKind::Xdp => "xdptcp",
    };
    let server = match a.server_stack {
        ServerStack::Kernel => "kernel",
        ServerStack::Xdptcp => "xdptcp",
    };
    json!({
        "workload": workload.name(),
        "client": client,
        "server": server,
        "conns": spec.conns,
        "msg_bytes": if stream || workload == Workload::Hold { Value::Null } else { json!(spec.msg_bytes) },
        "direction": if stream { json!(match spec.direction { Direction::Up => "up", Direction::Down => "down" }) } else { Value::Null },
        "rate": spec.rate,
        "gbit_per_s": if stream { json!(out.bytes as f64 * 8.0 / secs / 1e9) } else { Value::Null },
        "ops_per_s": match workload { Workload::Rr | Workload::Crr => json!(out.ops as f64 / secs), _ => Value::Null },
        "conns_per_s": match workload {
            Workload::Crr => json!(out.ops as f64 / secs),
            Workload::Hold => out.open_seconds.map_or(Value::Null, |s| json!(out.conns as f64 / s.max(1e-9))),
            _ => Value::Null,
        },
        "p50_us": us(meter, 0.5),
        "p90_us": us(meter, 0.9),
        "p99_us": us(meter, 0.99),
        "p999_us": us(meter, 0.999),
        "max_us": if meter.latency.is_empty() { Value::Null } else { json!(meter.latency.max() as f64 / 1000.0) },
        "server_bytes_per_conn": out.server_bytes_per_conn,
        "conns_held": if workload == Workload::Hold { json!(out.conns) } else { Value::Null },
        "errors": out.errors,
        "client_frames_in_per_s": out.frames_per_s.map(|f| f.0),
        "client_frames_out_per_s": out.frames_per_s.map(|f| f.1),
        "client_cpu_us_per_op": per_op(cpu.0),
        "server_cpu_us_per_op": per_op(cpu.1),
        "cpu_op_unit": match workload { Workload::Stream => "MB", Workload::Hold => "connection", _ => "operation" },
        "warmup_s": spec.warmup.as_secs_f64(),
        "duration_s": spec.duration.as_secs_f64(),
        "wall_s": wall,
        "threads": if a.stack == StackKind::Kernel { json!(a.threads) } else { json!(1) },
        "label": a.label,
    })
}

fn summary(r: &Value) -> String {
    let f = |k: &str| r[k].as_f64().map_or("-".to_string(), |v| format!("{v:.2}"));
    format!(
        "{} {}->{} conns={} msg={} | Gbit/s {} | ops/s {} | conns/s {} | p50 {} p90 {} p99 {} p99.9 {} max {} µs | B/conn {} | cpu µs/{} client {} server {} | errors {}",
        r["workload"].as_str().unwrap_or(""),
        r["client"].as_str().unwrap_or(""),
        r["server"].as_str().unwrap_or(""),
        r["conns"],
        r["msg_bytes"],
        f("gbit_per_s"),
        f("ops_per_s"),
        f("conns_per_s"),
        f("p50_us"),
        f("p90_us"),
        f("p99_us"),
        f("p999_us"),
        f("max_us"),
        f("server_bytes_per_conn"),
        r["cpu_op_unit"].as_str().unwrap_or("op"),
        f("client_cpu_us_per_op"),
        f("server_cpu_us_per_op"),
        r["errors"],
    )
}

fn read_doc(path: &std::path::Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({ "date": Value::Null, "machine": Value::Null, "runs": [] }))
}

fn write_doc(path: &std::path::Path, doc: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(doc).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Appends a run to a results file: `{"date", "machine", "runs": [...]}`.
fn append(path: &std::path::Path, rec: Value) -> Result<(), String> {
    let mut doc = read_doc(path);
    match doc["runs"].as_array_mut() {
        Some(runs) => runs.push(rec),
        None => doc["runs"] = json!([rec]),
    }
    write_doc(path, &doc)
}
