#!/usr/bin/env python3
"""Listen latency to the ear (issue 19, item 2). A benchmark, not a test: nothing asserts a time.
Needs root (a veth pair and a live capture).

Capture -> the agent's sound leaving the sound server, with the real pieces:

- a veth pair (smear0 / smear1); `silentmon server` captures smear1 live (libpcap, as on a SPAN);
- this script sends on smear0, through a raw socket, a SIP call to agent 5001 (INVITE, 200 OK
  with SDP) and then both directions' G.711 RTP every 20 ms: silence, except one agent packet
  per second that is a full-scale 1 kHz marker; the send time of each marker is noted (a packet
  is captured within microseconds of being sent on a veth);
- a private PulseAudio with a null sink; `silentmon supervisor --device pulse --monitor 5001`
  plays into it (defaults, or the extra arguments given, e.g. --device-period-ms 50);
- `parec --latency-msec=10` records the sink's monitor; what each read returns is stamped as it
  arrives, so a sample's time is that arrival minus the samples after it (parec's own
  buffering, at most 10 ms, counts as delay: an upper bound by that much). Long runs also
  print the first and last minute placed by frame count from the recording's origin
  (Recorder.origin), a diagnostic: frames the recording loses make it drift;
- latency = the marker's first sample above -20 dBFS in the sink minus the marker's send time.

Prints p50/p90/p99/max over the markers after a 5 s warm-up, and the endpoint's underruns and
late/lost packets (`ctl --endpoint status --json`).
Usage: tools/bench-ear.py SECONDS [supervisor arguments...]
Environment: SILENTMON (default target/release/silentmon), BENCH_DIR (a fresh temp dir),
STATUS_EVERY=SECONDS (the status trace's period, 5; 0: no trace, no `ctl` process meanwhile),
LOAD=PERCENT (a loaded machine: `stress-ng --cpu 0 --cpu-load PERCENT` runs on every CPU
meanwhile; `apt-get install stress-ng`).
"""

import json
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SILENTMON = os.environ.get("SILENTMON", str(ROOT / "target/release/silentmon"))
RATE = 48_000
THRESHOLD = int(32767 * 10 ** (-20 / 20))
GW, PHONE = ("10.77.0.1", 20000), ("10.77.0.2", 30000)
MAC_GW, MAC_PHONE = bytes.fromhex("020000770001"), bytes.fromhex("020000770002")

import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location("fa", Path(__file__).resolve().parent / "bench-first-audio.py")
fa = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fa)


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(src, dst, smac, dmac, payload):
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0xB8, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dmac + smac + b"\x08\x00" + ip + udp


def ulaw(sample):
    sign = 0x80 if sample < 0 else 0
    s = min(abs(sample), 32635) + 132
    exp = max(0, s.bit_length() - 8)
    mant = (s >> (exp + 3)) & 0x0F
    return ~(sign | (exp << 4) | mant) & 0xFF


MARKER = bytes(ulaw(int(30000 * math.sin(2 * math.pi * 1000 * n / 8000))) for n in range(160))
SILENCE = bytes([0xFF]) * 160


def sip(start, body, cseq):
    ct = "Content-Type: application/sdp\r\n" if body else ""
    return (f"{start}\r\nVia: SIP/2.0/UDP {GW[0]}:5060;branch=z9hG4bKear\r\n"
            f"From: <sip:+4930555@{GW[0]}>;tag=g\r\nTo: <sip:5001@{PHONE[0]}>"
            f"{';tag=p' if start.startswith('SIP') else ''}\r\nCall-ID: ear-1@bench\r\n"
            f"CSeq: {cseq}\r\n{ct}Content-Length: {len(body)}\r\n\r\n{body}").encode()


def sdp(ip, port):
    return f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"


def sender(sock, seconds, markers, stop):
    """The call: SIP, then RTP both ways every 20 ms; one agent marker per second."""
    s = lambda src, dst, sm, dm, p: sock.send(frame(src, dst, sm, dm, p))
    s((GW[0], 5060), (PHONE[0], 5060), MAC_GW, MAC_PHONE,
      sip("INVITE sip:5001@10.77.0.2 SIP/2.0", sdp(*GW), "1 INVITE"))
    s((PHONE[0], 5060), (GW[0], 5060), MAC_PHONE, MAC_GW,
      sip("SIP/2.0 200 OK", sdp(*PHONE), "1 INVITE"))
    t0 = time.monotonic()
    for k in range(int(seconds * 50)):
        if stop.is_set():
            return
        due = t0 + 0.1 + k * 0.02
        time.sleep(max(0.0, due - time.monotonic()))
        marker = k % 50 == 25
        for src, dst, sm, dm, ssrc in [(PHONE, GW, MAC_PHONE, MAC_GW, 0xA), (GW, PHONE, MAC_GW, MAC_PHONE, 0xB)]:
            rtp = struct.pack("!BBHII", 0x80, 0, k & 0xFFFF, (160 * k) & 0xFFFFFFFF, ssrc)
            payload = MARKER if (marker and ssrc == 0xA) else SILENCE
            now = time.monotonic()
            s(src, dst, sm, dm, rtp + payload)
            if marker and ssrc == 0xA:
                markers.append(now)


def pulse_latency_ms(env):
    """PulseAudio's own view (pactl): the playback stream's buffer and sink latency, the
    recording stream's buffer and source latency, ms (None where pactl shows none)."""
    def grab(kind, keys):
        out = subprocess.run(["pactl", "list", kind], env=env, capture_output=True, text=True).stdout
        vals = []
        for key in keys:
            line = next((l for l in out.splitlines() if l.strip().startswith(key + ":")), None)
            vals.append(round(int(line.split(":")[1].split()[0]) / 1000, 1) if line else None)
        return vals
    return grab("sink-inputs", ["Buffer Latency", "Sink Latency"]) + \
        grab("source-outputs", ["Buffer Latency", "Source Latency"])


def watch(ctl, trace, stop, env):
    """The endpoint's status (and PulseAudio's latencies) every STATUS_EVERY s (5; 0: never)
    while the call runs."""
    every = float(os.environ.get("STATUS_EVERY", "5"))
    while every > 0 and not stop.wait(every):
        out = subprocess.run(ctl + ["status", "--json"], capture_output=True, text=True).stdout
        if out:
            status = json.loads(out)
            status["pulse_ms"] = pulse_latency_ms(env)
            trace.append(status)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60
    extra = sys.argv[2:]
    work = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="silentmon-ear-"))
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ip", "link", "del", "smear0"], stderr=subprocess.DEVNULL)
    fa.run("ip", "link", "add", "smear0", "type", "veth", "peer", "name", "smear1")
    for i in ("smear0", "smear1"):
        fa.run("ip", "link", "set", i, "up")
    certs = work / "certs"
    fa.make_pki(certs)
    config, control, metrics = fa.appliance_config(work, certs, '[capture]\ninterfaces = ["smear1"]\n')
    procs, stop, markers, trace = [], threading.Event(), [], []
    load = os.environ.get("LOAD")
    try:
        if load:
            procs.append(subprocess.Popen(["stress-ng", "--cpu", "0", "--cpu-load", load, "--quiet"]))
        env = fa.start_pulse(work, procs)
        rec = fa.Recorder(env)
        procs.append(rec.proc)
        procs.append(subprocess.Popen([SILENTMON, "server", "--config", str(config)],
                                      stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w")))
        fa.wait("the appliance", lambda: fa.ok_url(f"http://{metrics}/metrics"))
        local = f"127.0.0.1:{fa.free_port()}"
        procs.append(subprocess.Popen(
            [SILENTMON, "supervisor", "--server", control, "--server-name", "localhost",
             "--user", "s1", "--ca", str(certs / "ca.pem"), "--cert", str(certs / "s1.pem"),
             "--key", str(certs / "s1.key"), "--listen", local, "--device", "pulse",
             "--monitor", "5001", *extra],
            env=env, stdout=subprocess.DEVNULL, stderr=open(work / "supervisor.log", "w")))
        ctl = [SILENTMON, "ctl", "--endpoint", local]
        fa.wait("the endpoint", lambda: subprocess.run(ctl + ["status"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode == 0)
        time.sleep(3)
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind(("smear0", 0))
        sending = threading.Thread(target=sender, args=(raw, seconds, markers, stop))
        watching = threading.Thread(target=watch, args=(ctl, trace, stop, env), daemon=True)
        sending.start()
        watching.start()
        sending.join()
        time.sleep(1)
        status = json.loads(subprocess.run(ctl + ["status", "--json"], capture_output=True,
                                           text=True).stdout or "{}")
    finally:
        stop.set()
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["ip", "link", "del", "smear0"], stderr=subprocess.DEVNULL)
    chunks = rec.since(0)
    origin = rec.origin()
    delays, counted = [], []
    for sent in markers:
        if sent - markers[0] < 5:
            continue  # warm-up
        # The marker's first loud frame, placed by its chunk's arrival stamp; and, as a
        # diagnostic, by counting frames from the recording's origin (Recorder.origin).
        heard = next(((a - (n - loud) / RATE, origin + (b + loud) / RATE)
                      for a, loud, n, b in chunks
                      if loud is not None and a - (n - loud) / RATE >= sent), None)
        if heard is not None and heard[0] - sent < 1.0:
            delays.append((heard[0] - sent) * 1000)
            counted.append((heard[1] - sent) * 1000)
    if not delays:
        sys.exit("bench-ear: no marker heard")
    if len(delays) >= 120:
        # Drift over a long run: the first and the last minute apart.
        mid = lambda d: sorted(d)[len(d) // 2]
        print(f"p50 of the first minute {mid(delays[:60]):.1f} ms, of the last {mid(delays[-60:]):.1f} ms"
              f" (placed by frame count: {mid(counted[:60]):.1f} and {mid(counted[-60:]):.1f} ms)")
    if len(delays) >= 120:
        mid = lambda d: sorted(d)[len(d) // 2]
        print("p50 per minute:", [round(mid(delays[i:i + 60]), 1) for i in range(0, len(delays), 60)])
    delays.sort()
    q = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))]
    print(f"listen latency to the ear, {len(delays)} markers of {len(markers)} "
          f"({' '.join(extra) or 'defaults'}{f', load {load}%' if load else ''}): p50 {q(0.5):.1f}  p90 {q(0.9):.1f}  "
          f"p99 {q(0.99):.1f}  max {delays[-1]:.1f} ms")
    if len(trace) >= 12:
        # Where the time went, minute by minute: the endpoint's queue at its lowest, the
        # device's own reported delay, underruns so far.
        for minute in range(0, len(trace), 12):
            t = trace[minute:minute + 12]
            print(f"minute {minute // 12 + 1}: queue_low_ms {[s.get('queue_low_ms') for s in t[::3]]} "
                  f"device_delay_ms {[s.get('device_delay_ms') for s in t[::3]]} "
                  f"underruns {t[-1].get('underruns')} "
                  f"pulse play buffer/sink, record buffer/source ms {[s.get('pulse_ms') for s in t[::6]]}")
        every = float(os.environ.get("STATUS_EVERY", "5"))
        grew = [round((i + 1) * every) for i in range(len(trace))
                if trace[i].get('underruns', 0) > (trace[i - 1].get('underruns', 0) if i else 0)]
        print(f"underruns first counted in the status of second(s) {grew}")
    keys = ("packets", "decoded", "late", "lost", "underruns", "frames_played", "queued_ms", "queue_low_ms", "queue_fixed_ms", "device_delay_ms", "delay_ms", "dtmf_muted")
    print("endpoint:", {k: status.get(k) for k in keys})


if __name__ == "__main__":
    main()
