//! Two shards, a server and a client, joined by a simulated link per
//! direction on a virtual clock: the loop the shard-level tests share.
//!
//! A test's `World` keeps its shards, applications and links as fields and
//! implements [`ShardPair`] (how to reach them, and what to check along the
//! way); [`flush`] and [`run`] drive it. Each step: both shards send what
//! they have (server first), the clock jumps to the next frame or timer,
//! the server takes its frames, then the client, then both run their timers.

use xdptcp::app::App;
use xdptcp::sim::link::Link;
use xdptcp::stack::Shard;
use xdptcp::time::{Duration, Instant};

/// A world's shards, applications, links and scratch frame, borrowed at once.
pub struct Parts<'a, S: App, C: App> {
    pub now: &'a mut Instant,
    pub server: &'a mut Shard<S>,
    pub srv: &'a mut S,
    pub client: &'a mut Shard<C>,
    pub cli: &'a mut C,
    pub to_server: &'a mut Link,
    pub to_client: &'a mut Link,
    pub buf: &'a mut Vec<u8>,
}

/// A server shard and a client shard over two links.
pub trait ShardPair: Sized {
    type S: App;
    type C: App;
    /// Whether the clock stands at the deadline when `run` gives up (else
    /// where the last event left it).
    const CLOCK_TO_DEADLINE: bool = true;
    fn parts(&mut self) -> Parts<'_, Self::S, Self::C>;
    /// The server's and client's shards and links, to find the next event.
    fn view(&self) -> (&Shard<Self::S>, &Shard<Self::C>, &Link, &Link);
    /// A frame a shard sent, before it goes on its link.
    fn sent(&mut self, _from_server: bool, _frame: &[u8]) {}
    /// After the server handled a frame.
    fn server_received(&mut self, _frame: &[u8]) {}
    /// After both shards sent what they had, and after the server's timers.
    fn checkpoint(&mut self) {}
    /// The clock moved to `now`, before anything is delivered.
    fn tick(&mut self, _now: Instant) {}
}

/// Puts every frame both shards have to send on its link.
pub fn flush<W: ShardPair>(w: &mut W) {
    for from_server in [true, false] {
        loop {
            let p = w.parts();
            let now = *p.now;
            let n = if from_server { p.server.poll_transmit(now, p.buf) } else { p.client.poll_transmit(now, p.buf) };
            let Some(n) = n else { break };
            let frame = p.buf[..n].to_vec();
            w.sent(from_server, &frame);
            let p = w.parts();
            let link = if from_server { p.to_client } else { p.to_server };
            link.send(now, frame);
        }
    }
}

/// Runs until `done` or `limit` of virtual time.
pub fn run<W: ShardPair>(w: &mut W, limit: Duration, mut done: impl FnMut(&W) -> bool) -> bool {
    let end = *w.parts().now + limit;
    loop {
        flush(w);
        w.checkpoint();
        if done(w) {
            return true;
        }
        let (server, client, to_server, to_client) = w.view();
        let next = [to_server.next_delivery(), to_client.next_delivery(), server.poll_timeout(), client.poll_timeout()].into_iter().flatten().min();
        let Some(next) = next else { return done(w) };
        if next > end {
            if W::CLOCK_TO_DEADLINE {
                *w.parts().now = end;
            }
            return done(w);
        }
        let now = (*w.parts().now).max(next);
        *w.parts().now = now;
        w.tick(now);
        while let Some(f) = w.parts().to_server.recv(now) {
            let p = w.parts();
            p.server.handle_frame(now, &f, p.srv);
            w.server_received(&f);
        }
        loop {
            let p = w.parts();
            let Some(f) = p.to_client.recv(now) else { break };
            p.client.handle_frame(now, &f, p.cli);
        }
        let p = w.parts();
        p.server.handle_timeout(now, p.srv);
        w.checkpoint();
        let p = w.parts();
        p.client.handle_timeout(now, p.cli);
    }
}
