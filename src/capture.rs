//! Packet capture: writes frames to a pcap file (Ethernet link type) that
//! tcpdump and Wireshark read. A layer of its own below `runtime` and `sim`,
//! both of which record through it (`xdptcp serve --pcap`, simulator runs);
//! it knows frames as bytes and time as the engine's `Instant`, nothing else.

use std::io::Write;
use std::path::Path;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

use crate::time::{Duration, Instant};

/// A pcap file being written: its header is written on creation, then one
/// record per [`PcapSink::write`].
pub struct PcapSink<W: Write> {
    writer: PcapWriter<W>,
}

/// A capture into a buffered file, as the workers and the simulator keep.
pub type Capture = PcapSink<std::io::BufWriter<std::fs::File>>;

impl PcapSink<std::io::BufWriter<std::fs::File>> {
    /// Creates (or truncates) the file at `path` and writes the header.
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        PcapSink::new(std::io::BufWriter::new(std::fs::File::create(path)?))
    }
}

fn io_err(e: pcap_file::PcapError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl<W: Write> PcapSink<W> {
    /// Writes the pcap header (Ethernet, 65535-byte snap length) to `writer`.
    pub fn new(writer: W) -> std::io::Result<Self> {
        let header = PcapHeader { datalink: DataLink::ETHERNET, snaplen: 65535, ..PcapHeader::default() };
        Ok(PcapSink { writer: PcapWriter::with_header(writer, header).map_err(io_err)? })
    }

    /// Records one frame seen at `at`.
    pub fn write(&mut self, at: Instant, frame: &[u8]) -> std::io::Result<()> {
        let ts = Duration::from_nanos(at.as_nanos());
        let packet = PcapPacket::new(ts, frame.len() as u32, frame);
        self.writer.write_packet(&packet).map(|_| ()).map_err(io_err)
    }

    /// The underlying writer (a `BufWriter` flushes when dropped).
    pub fn into_inner(self) -> W {
        self.writer.into_writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapReader;

    #[test]
    fn frames_read_back() {
        let mut sink = PcapSink::new(Vec::new()).unwrap();
        sink.write(Instant::from_micros(1_500_000), &[1, 2, 3]).unwrap();
        sink.write(Instant::from_micros(2_000_001), &[4; 60]).unwrap();
        let bytes = sink.into_inner();
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header().datalink, DataLink::ETHERNET);
        let p = reader.next_packet().unwrap().unwrap();
        assert_eq!((p.timestamp, &p.data[..]), (Duration::from_micros(1_500_000), &[1u8, 2, 3][..]));
        let p = reader.next_packet().unwrap().unwrap();
        assert_eq!(p.timestamp, Duration::from_micros(2_000_001));
        assert_eq!(p.data.len(), 60);
        assert!(reader.next_packet().is_none());
    }
}
