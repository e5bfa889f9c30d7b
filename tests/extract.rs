//! `silentmon extract` against independent references: on third-party G.711 captures, sox's
//! G.711 decoder applied to the RTP payload bytes tshark exports; on generator captures with
//! loss, reordering and duplicates, the generator's reference PCM (decode of what was sent,
//! silence where packets were lost). Stereo puts the agent left (tones tell the sides apart).

mod common;

use std::path::Path;
use std::process::Command;

use common::audio::{capgen, frequency, read_wav};
use common::*;
use serde_json::Value;

/// Payload bytes of the RTP packets of one SSRC, in capture order, as tshark exports them.
fn tshark_payload(file: &Path, ssrc: u32) -> Vec<u8> {
    let out = run_ok(
        Command::new("tshark")
            .arg("-n")
            .arg("-r")
            .arg(file)
            .args([
                "-o",
                "rtp.heuristic_rtp:TRUE",
                "-T",
                "fields",
                "-e",
                "rtp.payload",
                "-Y",
            ])
            .arg(format!("rtp.ssrc == 0x{ssrc:08x}")),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let hex: String = text.split_whitespace().collect::<String>().replace(':', "");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// sox's G.711 decoder: `law` is "ul" or "al".
fn sox_decode(codes: &[u8], law: &str, dir: &Path) -> Vec<i16> {
    let raw = dir.join("codes.raw");
    let pcm = dir.join("pcm.raw");
    std::fs::write(&raw, codes).unwrap();
    run_ok(
        Command::new("sox")
            .args(["-t", law, "-r", "8000", "-c", "1"])
            .arg(&raw)
            .args(["-t", "raw", "-e", "signed-integer", "-b", "16", "-L"])
            .arg(&pcm),
    );
    std::fs::read(&pcm)
        .unwrap()
        .chunks(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn extract_stream(file: &Path, stream: &str, out: &Path) -> Vec<i16> {
    run_ok(
        silentmon()
            .args(["extract", "-r"])
            .arg(file)
            .args(["--stream", stream, "-o"])
            .arg(out),
    );
    let (spec, pcm) = read_wav(out);
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 8000, 16)
    );
    pcm
}

#[test]
fn g711_alaw_equals_sox_decode_of_tshark_payload() {
    let dir = tempfile::tempdir().unwrap();
    let file = public("sipp-g711a.pcap");
    let flows: Value = serde_json::from_slice(
        &run_ok(silentmon().args(["flows", "--json", "-r"]).arg(&file)).stdout,
    )
    .unwrap();
    let s = &flows["streams"][0];
    let ssrc = s["ssrc"].as_u64().unwrap() as u32;
    let spec = format!(
        "{}-{}/0x{ssrc:08X}",
        s["src"].as_str().unwrap(),
        s["dst"].as_str().unwrap()
    );
    let ours = extract_stream(&file, &spec, &dir.path().join("a.wav"));
    let reference = sox_decode(&tshark_payload(&file, ssrc), "al", dir.path());
    assert_eq!(ours.len(), reference.len());
    assert!(ours == reference, "A-law decode differs from sox");
}

#[test]
fn g711_ulaw_and_alaw_streams_of_one_flow_by_ssrc() {
    // Two calls to the same destination port: PCMU (SSRC 0x343DA99B) then PCMA (0x343FFA34).
    let dir = tempfile::tempdir().unwrap();
    let file = public("wireshark-sip-rtp-g711.pcap");
    for (ssrc, law) in [(0x343DA99Bu32, "ul"), (0x343FFA34, "al")] {
        let flows: Value = serde_json::from_slice(
            &run_ok(silentmon().args(["flows", "--json", "-r"]).arg(&file)).stdout,
        )
        .unwrap();
        let s = flows["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["ssrc"].as_u64() == Some(ssrc as u64))
            .unwrap();
        let spec = format!(
            "{}-{}/0x{ssrc:08X}",
            s["src"].as_str().unwrap(),
            s["dst"].as_str().unwrap()
        );
        let ours = extract_stream(&file, &spec, &dir.path().join(format!("{law}.wav")));
        let reference = sox_decode(&tshark_payload(&file, ssrc), law, dir.path());
        assert!(
            ours == reference,
            "{law}: decode differs from sox ({} vs {})",
            ours.len(),
            reference.len()
        );
    }
}

#[test]
fn generator_reference_pcm_with_loss_reordering_duplicates_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("c.pcap");
    let truth = dir.path().join("c.json");
    let refs = dir.path().join("ref");
    run_ok(
        capgen()
            .args([
                "calls",
                "--calls",
                "2",
                "--duration",
                "4",
                "--encap",
                "vlan:100+",
                "--codec",
                "pcma",
            ])
            .args([
                "--loss",
                "3",
                "--reorder",
                "2",
                "--duplicate",
                "2",
                "--jitter-ms",
                "2",
                "--seed",
                "9",
                // RFC 4733 events (silent), their end packet three times.
                "--dtmf",
                "12",
            ])
            .arg("-o")
            .arg(&cap)
            .arg("--truth")
            .arg(&truth)
            .arg("--ref-dir")
            .arg(&refs),
    );
    let t: Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    let mut checked = 0;
    let mut lost_somewhere = false;
    for s in t["streams"].as_array().unwrap() {
        let spec = format!(
            "{}-{}",
            s["src"].as_str().unwrap(),
            s["dst"].as_str().unwrap()
        );
        let ours = extract_stream(&cap, &spec, &dir.path().join("x.wav"));
        let (_, reference) = read_wav(Path::new(s["ref_wav"].as_str().unwrap()));
        assert_eq!(ours.len(), reference.len(), "{spec}: length");
        assert!(
            ours == reference,
            "{spec}: PCM differs from the generator's reference"
        );
        lost_somewhere |= s["missing"].as_u64().unwrap() > 0;
        checked += 1;
    }
    assert_eq!(checked, 4);
    assert!(lost_somewhere, "the capture must exercise loss");
}

#[test]
fn call_and_number_stereo_puts_the_agent_left() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("c.pcap");
    let truth = dir.path().join("c.json");
    // Call i: caller tone 400+10i Hz, agent tone 1000+10i Hz; agents 5001, 5002.
    run_ok(
        capgen()
            .args([
                "calls",
                "--calls",
                "2",
                "--duration",
                "3",
                "--codec",
                "pcmu",
                "--seed",
                "5",
            ])
            .arg("-o")
            .arg(&cap)
            .arg("--truth")
            .arg(&truth),
    );
    let t: Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    let call_id = t["calls"][1]["call_id"].as_str().unwrap();
    for sel in [vec!["--call", call_id], vec!["--number", "5002"]] {
        let out = dir.path().join("s.wav");
        run_ok(
            silentmon()
                .args(["extract", "--stereo", "-r"])
                .arg(&cap)
                .args(&sel)
                .arg("-o")
                .arg(&out),
        );
        let (spec, pcm) = read_wav(&out);
        assert_eq!(spec.channels, 2);
        let left: Vec<i16> = pcm.iter().step_by(2).copied().collect();
        let right: Vec<i16> = pcm.iter().skip(1).step_by(2).copied().collect();
        let (fl, fr) = (frequency(&left[800..]), frequency(&right[800..]));
        assert!(
            (fl - 1010.0).abs() < 15.0,
            "{sel:?}: left {fl} Hz, expected the agent's 1010 Hz"
        );
        assert!(
            (fr - 410.0).abs() < 15.0,
            "{sel:?}: right {fr} Hz, expected the caller's 410 Hz"
        );
    }
    // Mono mixes both; unknown selections are clear errors.
    let out = dir.path().join("m.wav");
    run_ok(
        silentmon()
            .args(["extract", "-r"])
            .arg(&cap)
            .args(["--number", "5001", "-o"])
            .arg(&out),
    );
    assert_eq!(read_wav(&out).0.channels, 1);
    let bad = silentmon()
        .args(["extract", "-r"])
        .arg(&cap)
        .args(["--number", "9999", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("9999"));
}

#[test]
fn opus_call_decodes_at_48k() {
    let dir = tempfile::tempdir().unwrap();
    let file = public("wireshark-sip-rtp-opus.pcap");
    let flows: Value = serde_json::from_slice(
        &run_ok(silentmon().args(["flows", "--json", "-r"]).arg(&file)).stdout,
    )
    .unwrap();
    let call_id = flows["streams"][0]["call_id"].as_str().unwrap().to_owned();
    let out = dir.path().join("o.wav");
    run_ok(
        silentmon()
            .args(["extract", "-r"])
            .arg(&file)
            .args(["--call", &call_id, "-o"])
            .arg(&out),
    );
    let (spec, pcm) = read_wav(&out);
    assert_eq!(spec.sample_rate, 48_000);
    // 425 packets of 20 ms: about 8.5 s of audio, not silence.
    let secs = pcm.len() as f64 / 48_000.0;
    assert!((secs - 8.5).abs() < 0.3, "{secs} s");
    assert!(pcm.iter().any(|&s| s.unsigned_abs() > 1000));
}
