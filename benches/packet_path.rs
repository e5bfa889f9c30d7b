//! Criterion benchmarks of the hot paths: the whole engine per frame over a real capture held in
//! memory, decapsulation alone, and G.711 decoding. Whole-program ratios against libpcap and
//! tshark are in tools/bench-flows.sh.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use silentmon::capture::{PacketSource, PcapFile};
use silentmon::engine::{Engine, EngineConfig};
use silentmon::media::g711;
use silentmon::packet::{DecapConfig, Decapsulator, LinkType};
use silentmon::time::Timestamp;

/// Frames of a capture, loaded once.
fn load(path: &Path) -> (LinkType, Vec<(Timestamp, Vec<u8>)>) {
    let mut f = PcapFile::open(path, None).expect("bench capture");
    let link = f.link_type();
    let mut frames = Vec::new();
    while let Some(fr) = f.next_frame().unwrap() {
        frames.push((fr.ts, fr.data.to_vec()));
    }
    (link, frames)
}

fn capture_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/calls-4-vlan100-loss.pcap")
}

fn engine(c: &mut Criterion) {
    let (link, frames) = load(&capture_path());
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("handle_frame/calls-4-vlan100", |b| {
        b.iter(|| {
            let mut e = Engine::new(EngineConfig::default());
            for (ts, data) in &frames {
                black_box(e.handle_frame(*ts, link, data));
            }
            e.stats().rtp_packets
        })
    });
    g.bench_function("decapsulate/calls-4-vlan100", |b| {
        let mut d = Decapsulator::new(DecapConfig::default());
        b.iter(|| {
            for (ts, data) in &frames {
                black_box(d.decapsulate(*ts, link, data).ip);
            }
        })
    });
    g.finish();
}

fn g711_decode(c: &mut Criterion) {
    let codes: Vec<u8> = (0..160 * 50).map(|i| (i * 7 % 256) as u8).collect();
    let mut out = Vec::with_capacity(codes.len());
    let mut g = c.benchmark_group("g711");
    g.throughput(Throughput::Elements(codes.len() as u64));
    g.bench_function("decode_ulaw/1s", |b| {
        b.iter(|| {
            out.clear();
            g711::decode_ulaw(black_box(&codes), &mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, engine, g711_decode);
criterion_main!(benches);
