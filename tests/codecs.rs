//! G.722 and G.729 (issue 18, item 4), decoded by `extract` and by the live listening pipeline,
//! against an independent decoder: ffmpeg on the payload tshark exports from the same file.
//! G.722 (spandsp here, ffmpeg's own ADPCM there) must match sample for sample; G.729
//! (libbcg729 here, ffmpeg's decoder there, which is not bit-exact to the ITU reference)
//! within 20 dB SNR, aligned sample for sample. Opus (libopus through audiopus here) against
//! opus-tools' `opusdec` (libopus too, from an Ogg file written here of the same packets):
//! within one LSB.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::appliance::{start_replaying, wait_replay_end, Pki, Roster};
use common::audio::{capgen, read_wav, seconds_of};
use common::endpoint::{stereo_recordings, Endpoint};
use common::{public, run_ok, silentmon};

fn generate(dir: &Path, codec: &str, secs: &str) -> PathBuf {
    let pcap = dir.join(format!("{codec}.pcap"));
    run_ok(
        capgen()
            .args([
                "calls",
                "--calls",
                "2",
                "--duration",
                secs,
                "--codec",
                codec,
            ])
            .arg("-o")
            .arg(&pcap)
            .arg("--truth")
            .arg(dir.join(format!("{codec}.json"))),
    );
    pcap
}

/// ffmpeg's decode of the RTP payload from `src_port` in `pcap` (raw `format` frames).
fn ffmpeg_decode(dir: &Path, pcap: &Path, src_port: u16, format: &str) -> Vec<i16> {
    let out = run_ok(
        Command::new("tshark")
            .args(["-n", "-r"])
            .arg(pcap)
            .args(["-Y", &format!("rtp && udp.srcport == {src_port}")])
            .args(["-T", "fields", "-e", "rtp.payload"]),
    );
    let hex: String = String::from_utf8_lossy(&out.stdout)
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(!bytes.is_empty(), "no payload exported");
    let (raw, pcm) = (dir.join("payload.raw"), dir.join("ffmpeg.raw"));
    std::fs::write(&raw, bytes).unwrap();
    run_ok(
        Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", format, "-i"])
            .arg(&raw)
            .args(["-f", "s16le", "-ac", "1"])
            .arg(&pcm),
    );
    std::fs::read(&pcm)
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// `silentmon extract` of one stream: (rate, samples).
fn extract(dir: &Path, pcap: &Path, stream: &str) -> (u32, Vec<i16>) {
    let wav = dir.join("extract.wav");
    run_ok(
        silentmon()
            .args(["extract", "-r"])
            .arg(pcap)
            .args(["--stream", stream, "-o"])
            .arg(&wav),
    );
    let (spec, pcm) = read_wav(&wav);
    (spec.sample_rate, pcm)
}

fn snr_db(ours: &[i16], reference: &[i16]) -> f64 {
    let (mut signal, mut noise) = (0f64, 0f64);
    for (a, b) in ours.iter().zip(reference) {
        signal += f64::from(*b).powi(2);
        noise += (f64::from(*a) - f64::from(*b)).powi(2);
    }
    10.0 * (signal / noise.max(1.0)).log10()
}

#[test]
fn g722_extract_equals_ffmpeg_sample_for_sample() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let generated = generate(d, "g722", "3");
    for (pcap, port, stream) in [
        (
            public("wireshark-sip-rtp-g722.pcap"),
            17472,
            "10.0.2.15:17472-10.0.2.20:6000",
        ),
        (generated.clone(), 20000, "10.1.0.1:20000-10.2.0.1:30000"),
        (generated, 30002, "10.2.0.2:30002-10.1.0.2:20002"),
    ] {
        let (rate, ours) = extract(d, &pcap, stream);
        assert_eq!(rate, 16_000, "{stream}");
        let reference = ffmpeg_decode(d, &pcap, port, "g722");
        assert_eq!(ours.len(), reference.len(), "{stream}: length");
        assert!(ours == reference, "{stream}: differs from ffmpeg");
    }
}

#[test]
fn g729_extract_matches_ffmpeg_within_20_db() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pcap = generate(d, "g729", "3");
    for (port, stream) in [
        (20000, "10.1.0.1:20000-10.2.0.1:30000"),
        (30002, "10.2.0.2:30002-10.1.0.2:20002"),
    ] {
        let (rate, ours) = extract(d, &pcap, stream);
        assert_eq!(rate, 8000);
        let reference = ffmpeg_decode(d, &pcap, port, "g729");
        assert_eq!(ours.len(), reference.len(), "{stream}: length");
        let snr = snr_db(&ours, &reference);
        assert!(snr > 20.0, "{stream}: {snr:.1} dB against ffmpeg");
    }
}

#[test]
fn a_supervisor_hears_g722_and_g729_calls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("certs"), "localhost");
    let roster = Roster {
        agents: &[("5001", "blue"), ("5002", "blue")],
        supervisors: &[("s1", &["blue"])],
    };
    for (codec, rate) in [("g722", 16_000), ("g729", 8000)] {
        let d = dir.path().join(codec);
        std::fs::create_dir_all(&d).unwrap();
        let pcap = generate(&d, codec, "5");
        let r = start_replaying(&d, &pki, "a", &roster, &pcap, ("1", false));
        let e = Endpoint::start(&pki, &d, &[&r.control], "s1", &["--monitor", "5001"]);
        wait_replay_end(&r);
        let log = e.stop();
        let wavs = stereo_recordings(&d.join("rec-s1"), "5001");
        assert_eq!(wavs.len(), 1, "{codec}: one recording\n{log}");
        assert_eq!(wavs[0].rate, rate, "{codec}");
        let secs = wavs[0].secs();
        let all = [400.0, 410.0, 1000.0, 1010.0];
        let agent = seconds_of(&wavs, 0, 1000.0, &all);
        let caller = seconds_of(&wavs, 1, 400.0, &all);
        assert!(
            secs > 3.5 && agent > secs - 1.0 && caller > secs - 1.0,
            "{codec}: agent {agent:.1} s, caller {caller:.1} s of {secs:.1} s\n{log}"
        );
    }
}

/// The Ogg CRC-32 (polynomial 0x04C11DB7, not reflected, initial 0).
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One Ogg page holding one packet (under 255 * 255 bytes).
fn ogg_page(out: &mut Vec<u8>, flags: u8, granule: u64, seq: u32, packet: &[u8]) {
    let start = out.len();
    out.extend_from_slice(b"OggS\0");
    out.push(flags);
    out.extend_from_slice(&granule.to_le_bytes());
    out.extend_from_slice(&0x5113_u32.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let mut lacing = vec![255u8; packet.len() / 255];
    lacing.push((packet.len() % 255) as u8);
    out.push(lacing.len() as u8);
    out.extend_from_slice(&lacing);
    out.extend_from_slice(packet);
    let crc = ogg_crc(&out[start..]);
    out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
}

/// Samples at 48 kHz one Opus packet decodes to (RFC 6716 3.1: its TOC byte and frame count).
fn opus_samples(packet: &[u8]) -> u64 {
    let config = packet[0] >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match packet[0] & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(packet.get(1).map_or(1, |b| b & 0x3F)),
    };
    frame * frames
}

#[test]
fn opus_extract_equals_opusdec_within_one_lsb() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pcap = public("wireshark-sip-rtp-opus.pcap");
    let (rate, ours) = extract(d, &pcap, "10.0.2.15:24196-10.0.2.20:6000");
    assert_eq!(rate, 48_000);
    // The same packets, from tshark, in an Ogg Opus file: mono (as we decode), no pre-skip.
    let out = run_ok(Command::new("tshark").args(["-n", "-r"]).arg(&pcap).args([
        "-Y",
        "rtp && udp.srcport == 24196",
        "-T",
        "fields",
        "-e",
        "rtp.payload",
    ]));
    // (One 4-byte datagram on the port, which tshark still matches as `rtp`, has no payload.)
    let packets: Vec<Vec<u8>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let hex: String = l.chars().filter(|c| c.is_ascii_hexdigit()).collect();
            (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect()
        })
        .collect();
    assert_eq!(packets.len(), 425);
    let mut ogg = Vec::new();
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[1, 1, 0, 0]);
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&[0, 0, 0]);
    ogg_page(&mut ogg, 0x02, 0, 0, &head);
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&4u32.to_le_bytes());
    tags.extend_from_slice(b"test");
    tags.extend_from_slice(&0u32.to_le_bytes());
    ogg_page(&mut ogg, 0, 0, 1, &tags);
    let mut granule = 0;
    for (i, p) in packets.iter().enumerate() {
        granule += opus_samples(p);
        let flags = if i + 1 == packets.len() { 0x04 } else { 0 };
        ogg_page(&mut ogg, flags, granule, 2 + i as u32, p);
    }
    let (file, wav) = (d.join("call.opus"), d.join("opusdec.wav"));
    std::fs::write(&file, ogg).unwrap();
    run_ok(
        Command::new("opusdec")
            .args(["--quiet", "--rate", "48000", "--no-dither", "--force-wav"])
            .arg(&file)
            .arg(&wav),
    );
    let (spec, reference) = read_wav(&wav);
    assert_eq!((spec.channels, spec.sample_rate), (1, 48_000));
    assert_eq!(ours.len(), reference.len(), "length");
    let worst = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
        .max()
        .unwrap();
    assert!(worst <= 1, "differs from opusdec by up to {worst}");
    assert!(
        reference.iter().any(|&s| s.unsigned_abs() > 1000),
        "not silence"
    );
}
