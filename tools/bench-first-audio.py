#!/usr/bin/env python3
"""Time to first audio (issue 19, item 4). A benchmark, not a test: nothing asserts a time.

From a supervisor's "monitor agent N" on the endpoint's local control (`silentmon ctl
--endpoint ... monitor 5001`, what a desktop tool or the page sends) to the first sample of that
agent's audio leaving the sound server, on a call in progress, STARTS times (default 100):

- `silentmon server --replay --loop` plays one long capgen call (agent 5001 sends a 1000 Hz tone,
  the caller 400 Hz) over TLS 1.3 with a private CA made for the run, at real time;
- a private PulseAudio with a null sink; `silentmon supervisor --device pulse` plays into it
  (default settings: jitter target 40 ms, cushion one device period plus 50 ms);
- `parec --latency-msec=10` records the sink's monitor; a reader thread stamps what each read
  returns with the monotonic clock as it arrives, so a sample's time is its read's arrival minus
  the samples after it in that read (parec's own buffering, at most its 10 ms latency, counts as
  delay: the figure is an upper bound by that much);
- each start: wait for silence, note the time, run `ctl --endpoint monitor 5001` (its process
  start, about 5 ms, is included, as it is for a user), find the first chunk whose samples
  exceed -30 dBFS, then `ctl --endpoint stop` and wait 0.7 s.

Prints p50/p90/p99/max in ms. Usage: tools/bench-first-audio.py [STARTS]
Environment: SILENTMON, CAPGEN (default target/release/...), BENCH_DIR (a fresh temp dir).
"""

import array
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SILENTMON = os.environ.get("SILENTMON", str(ROOT / "target/release/silentmon"))
CAPGEN = os.environ.get("CAPGEN", str(ROOT / "target/release/capgen"))
# What parec asks PulseAudio for: its buffering counts as delay, up to this much.
PAREC_LATENCY_MS = int(os.environ.get("PAREC_LATENCY_MS", "10"))
RATE = 48_000
THRESHOLD = int(32767 * 10 ** (-30 / 20))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(*args, **kw):
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL, **kw)


def wait(what, check, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    sys.exit(f"bench-first-audio: {what} did not happen within {seconds} s")


class Recorder:
    """parec on the sink's monitor; per chunk: arrival time, frames before it, first loud frame."""

    def __init__(self, env):
        self.proc = subprocess.Popen(
            ["parec", "-d", "bench.monitor", f"--rate={RATE}", "--channels=2",
             "--format=s16le", "--raw", f"--latency-msec={PAREC_LATENCY_MS}"],
            stdout=subprocess.PIPE, env=env)
        self.chunks = []  # (arrival, loud frame index in chunk or None, frames, frames before)
        self.lock = threading.Lock()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        """Takes whatever parec has written at each wakeup, stamped on arrival. (Reading one
        fixed chunk per wakeup, as this did before 2026-12-07, fell behind under load and
        never caught up: every later sample was stamped that much late, and the pipe's
        backlog made PulseAudio drop recorded frames.)"""
        fd = self.proc.stdout.fileno()
        before, partial = 0, b""
        while True:
            data = os.read(fd, 1 << 16)
            now = time.monotonic()
            if not data:
                return
            data = partial + data
            whole = len(data) - len(data) % 4
            data, partial = data[:whole], data[whole:]
            if not data:
                continue
            samples = array.array("h", data)  # s16le; this bench runs on little-endian hosts
            loud = None
            if max(samples) > THRESHOLD or min(samples) < -THRESHOLD:
                loud = next(i // 2 for i, s in enumerate(samples) if abs(s) > THRESHOLD)
            with self.lock:
                self.chunks.append((now, loud, len(samples) // 2, before))
            before += len(samples) // 2

    def origin(self):
        """When the recording's frame 0 left the sink, on the monotonic clock: the earliest
        chunk arrival minus the frames up to its end (a reader that falls behind only makes
        later looks larger; the null sink runs on the system clock, so frames count time)."""
        with self.lock:
            return min(a - (before + n) / RATE for a, _, n, before in self.chunks)

    def since(self, t):
        with self.lock:
            return [c for c in self.chunks if c[0] >= t]


def appliance_config(work, certs, head=""):
    """The bench appliance's configuration in WORK (loopback ports, the PKI in CERTS, agent 5001
    and supervisor s1 of team blue, HEAD's tables first): (its path, control, metrics)."""
    control, monitor, metrics = (f"127.0.0.1:{free_port()}" for _ in range(3))
    config = work / "silentmon.toml"
    config.write_text(
        head +
        f'[control]\nlisten = "{control}"\nmetrics_listen = "{metrics}"\n'
        f'[monitor]\nlisten = "{monitor}"\n'
        f'[security]\ncerts_dir = "{certs}"\naudit_log = "{work / "audit.jsonl"}"\n'
        'passwordless_logins = true\n'
        '[[agent]]\nid = "5001"\nextension = "5001"\nteam = "blue"\n'
        '[[supervisor]]\nid = "s1"\nteams = ["blue"]\n')
    return config, control, metrics


def main():
    starts = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    work = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="silentmon-first-audio-"))
    work.mkdir(parents=True, exist_ok=True)
    certs, cap = work / "certs", work / "call.pcap"
    run(CAPGEN, "calls", "--calls", "1", "--duration", "900", "-o", cap, "--truth", work / "t.json")
    make_pki(certs)
    config, control, metrics = appliance_config(work, certs)

    procs = []
    try:
        env = start_pulse(work, procs)
        rec = Recorder(env)
        procs.append(rec.proc)
        procs.append(subprocess.Popen(
            [SILENTMON, "server", "--config", str(config), "--replay", str(cap), "--loop"],
            stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w")))
        wait("the appliance", lambda: ok_url(f"http://{metrics}/metrics"))
        local = f"127.0.0.1:{free_port()}"
        procs.append(subprocess.Popen(
            [SILENTMON, "supervisor", "--server", control, "--server-name", "localhost",
             "--user", "s1", "--ca", str(certs / "ca.pem"), "--cert", str(certs / "s1.pem"),
             "--key", str(certs / "s1.key"), "--listen", local, "--device", "pulse"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(work / "supervisor.log", "w")))
        ctl = [SILENTMON, "ctl", "--endpoint", local]
        wait("the endpoint", lambda: subprocess.run(ctl + ["status"], stdout=subprocess.DEVNULL,
             stderr=subprocess.DEVNULL).returncode == 0)
        time.sleep(3)  # the device opened and playing silence, as on a desk
        delays = []
        for i in range(starts):
            quiet_since = time.monotonic()
            wait("silence", lambda: all(c[1] is None for c in rec.since(quiet_since - 0.3))
                 and time.monotonic() - quiet_since > 0.3, 10)
            t0 = time.monotonic()
            run(*ctl, "monitor", "5001")
            heard = None
            deadline = t0 + 5
            while heard is None and time.monotonic() < deadline:
                for arrival, loud, frames, _ in rec.since(t0):
                    if loud is not None:
                        heard = arrival - (frames - loud) / RATE
                        break
                time.sleep(0.005)
            run(*ctl, "stop")
            if heard is None:
                sys.exit(f"bench-first-audio: start {i}: nothing heard within 5 s")
            delays.append((heard - t0) * 1000)
            time.sleep(0.7)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    delays.sort()
    q = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))]
    print(f"time to first audio over {len(delays)} starts (ms): p50 {q(0.5):.0f}  "
          f"p90 {q(0.9):.0f}  p99 {q(0.99):.0f}  max {delays[-1]:.0f}  "
          f"mean {statistics.mean(delays):.0f}")


def make_pki(certs):
    """A private CA in `certs` with the appliance's (localhost) and supervisor s1's certificates."""
    run(SILENTMON, "certs", "ca", "--no-password", "--out", certs)
    for name, role in [("localhost", "--server"), ("s1", "--client")]:
        run(SILENTMON, "certs", "request", "--name", name, "--out", certs)
        run(SILENTMON, "certs", "sign", role, "--request", certs / f"{name}.csr",
            "--ca-dir", certs, "-o", certs / f"{name}.pem")
    (certs / "localhost.pem").rename(certs / "server.pem")
    (certs / "localhost.key").rename(certs / "server.key")


def start_pulse(work, procs):
    """A private PulseAudio whose default sink is the null sink `bench`; returns its clients' env."""
    runtime = work / "run"
    (runtime / "pulse").mkdir(parents=True, exist_ok=True)
    (work / "home").mkdir(exist_ok=True)
    sock = runtime / "pulse/native"
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), PULSE_SERVER=f"unix:{sock}",
               HOME=str(work / "home"))
    procs.append(subprocess.Popen(
        ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
         "--use-pid-file=no", "-L", f"module-native-protocol-unix auth-anonymous=1 socket={sock}",
         "-L", f"module-null-sink sink_name=bench rate={RATE} channels=2"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(work / "pulseaudio.log", "w")))
    wait("PulseAudio", lambda: subprocess.run(["pactl", "info"], env=env,
         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0)
    run("pactl", "set-default-sink", "bench", env=env)
    return env


def ok_url(url):
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
