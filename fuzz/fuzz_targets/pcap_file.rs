//! Arbitrary bytes as a classic pcap file through the reader `flows` and `extract` use (and
//! the engine behind it). Must never panic: a bad record is an error, the end is `None`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silentmon::capture::classic::ClassicPcap;
use silentmon::engine::{Engine, EngineConfig};
use silentmon::packet::LinkType;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(mut r)) = ClassicPcap::from_reader(std::io::Cursor::new(data)) else {
        return;
    };
    let link = LinkType::from_dlt(r.linktype() as i32);
    let mut engine = Engine::new(EngineConfig::default());
    while let Ok(Some(f)) = r.next_frame() {
        assert!(f.data.len() <= data.len());
        engine.handle_frame(f.ts, link, f.data);
    }
});
