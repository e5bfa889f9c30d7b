//! Arbitrary text as the appliance's and the supervisor endpoint's TOML configuration: parsing
//! and validation never panic, and every error names a file. The files a configuration names
//! (`directory`, `capture.filter_file`) come from a fixed in-memory set, never the file system.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use silentmon::config::supervisor::SupervisorSettings;
use silentmon::config::Settings;

/// What `directory = "agents.toml"` and `filter_file = "span.bpf"` name; anything else is
/// missing.
fn read(p: &Path) -> std::io::Result<String> {
    match p.file_name().and_then(|n| n.to_str()) {
        Some("agents.toml") => Ok("[[agent]]\nid = \"5001\"\nextension = \"5001\"\nteam = \"t\"\n\
                                   [[supervisor]]\nid = \"s1\"\nteams = [\"t\"]\n"
            .into()),
        Some("span.bpf") => Ok("# SIP and RTP, tagged or not\nudp or (vlan and udp)\n".into()),
        _ => Err(std::io::ErrorKind::NotFound.into()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Settings::parse_with(text, Path::new("/fuzz/silentmon.toml"), &mut read) {
        let message = e.to_string();
        assert!(message.contains(".toml"), "an error without its file: {message}");
    }
    if let Err(e) = SupervisorSettings::parse(text, Path::new("/fuzz/supervisor.toml")) {
        let message = e.to_string();
        assert!(
            message.contains("supervisor.toml"),
            "an error without its file: {message}"
        );
    }
});
