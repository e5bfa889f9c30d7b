//! A private PulseAudio for real-audio tests without a sound card: a daemon with one null sink
//! (`ci_sink`, 48 kHz stereo) in a private runtime directory, ALSA's default device pointed at
//! it through the pulse plugin (a private `ALSA_CONFIG_PATH` file), and `parec` recording the
//! sink's monitor. Everything it started is killed on drop, also when an assertion fails.
//!
//! Rules: [`Pulse::start`] sets the environment of this process (ALSA and the pulse client
//! library read it when the first device opens), so call it before anything touches ALSA and
//! run one audio test per process. Needs `pulseaudio`, `pactl`/`parec` (pulseaudio-utils) and
//! the ALSA pulse plugin (libasound2-plugins): `tools/install-deps.sh --test`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The null sink's name.
pub const SINK: &str = "ci_sink";
/// The null sink's (and the recording's) rate.
pub const RATE: u32 = 48_000;

/// True when `program` is on the PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when the ALSA pulse plugin is installed.
pub fn have_alsa_pulse_plugin() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ]
    .iter()
    .any(|d| {
        Path::new(d)
            .join("alsa-lib/libasound_module_pcm_pulse.so")
            .exists()
    })
}

/// The private daemon.
pub struct Pulse {
    dir: PathBuf,
    runtime: PathBuf,
    daemon: Option<Child>,
    recorder: Option<(Child, PathBuf)>,
}

impl Pulse {
    /// Starts a daemon under `dir` (which must exist and stay until the drop), waits until it
    /// answers, makes `ci_sink` the default sink and points this process's ALSA default
    /// device at it.
    pub fn start(dir: &Path) -> Result<Pulse, String> {
        let runtime = dir.join("run");
        let home = dir.join("home");
        for d in [&runtime, &home] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let socket = runtime.join("pulse/native");
        let server = format!("unix:{}", socket.display());
        // The pulse plugin as ALSA's default device, talking to this daemon only.
        let alsa_conf = dir.join("asound.conf");
        std::fs::write(
            &alsa_conf,
            format!(
                "</usr/share/alsa/alsa.conf>\n\
                 pcm.!default {{ type pulse server \"{server}\" device \"{SINK}\" }}\n\
                 ctl.!default {{ type pulse server \"{server}\" }}\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        std::env::set_var("ALSA_CONFIG_PATH", &alsa_conf);
        std::env::set_var("XDG_RUNTIME_DIR", &runtime);
        std::env::set_var("PULSE_SERVER", &server);
        std::env::set_var("PULSE_SINK", SINK);

        let mut pulse = Pulse {
            dir: dir.to_path_buf(),
            runtime,
            daemon: None,
            recorder: None,
        };
        pulse.spawn_daemon()?;
        pulse.wait_ready()?;
        Ok(pulse)
    }

    /// Starts the daemon (again, after [`Pulse::kill_daemon`]) on the same socket; returns
    /// at once (its only sink, `ci_sink`, is the default). [`Pulse::wait_ready`] waits for it.
    pub fn spawn_daemon(&mut self) -> Result<(), String> {
        let home = self.dir.join("home");
        let socket = self.runtime.join("pulse/native");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pulseaudio.log"))
            .map_err(|e| e.to_string())?;
        // In the foreground (no -D) so this struct owns the process and can kill it.
        let child = self
            .cmd("pulseaudio")
            .env("HOME", &home)
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--use-pid-file=no",
                "--log-target=stderr",
                "-L",
                &format!(
                    "module-native-protocol-unix auth-anonymous=1 socket={}",
                    socket.display()
                ),
                "-L",
                &format!("module-null-sink sink_name={SINK} rate={RATE} channels=2"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("pulseaudio: {e}"))?;
        self.daemon = Some(child);
        Ok(())
    }

    /// Waits until the daemon answers, and makes `ci_sink` its default sink.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "pulseaudio exited with {status}: {}",
                    self.log_tail()
                ));
            }
            let ok = self
                .cmd("pactl")
                .arg("info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if ok.is_ok_and(|s| s.success()) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pulseaudio did not answer within 10 s: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let ok = self.cmd("pactl").args(["set-default-sink", SINK]).status();
        if !ok.is_ok_and(|s| s.success()) {
            return Err("pactl set-default-sink failed".into());
        }
        Ok(())
    }

    /// Kills the daemon (and the recorder): the device disappears under its clients.
    pub fn kill_daemon(&mut self) {
        self.stop_recording();
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// A command talking to this daemon.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("XDG_RUNTIME_DIR", &self.runtime).env(
            "PULSE_SERVER",
            format!("unix:{}", self.runtime.join("pulse/native").display()),
        );
        c
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("pulseaudio.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Starts recording the sink's monitor (s16le stereo at [`RATE`]) into `raw`, at 50 ms
    /// latency, and waits until data flows (parec takes 1.3-1.6 s before its first bytes).
    pub fn record(&mut self, raw: &Path) -> Result<(), String> {
        self.stop_recording();
        let file = std::fs::File::create(raw).map_err(|e| e.to_string())?;
        let child = self
            .cmd("parec")
            .args([
                "-d",
                &format!("{SINK}.monitor"),
                &format!("--rate={RATE}"),
                "--channels=2",
                "--format=s16le",
                "--raw",
                // Also sets the sink's latency: a null sink nobody asks for low latency
                // renders in 2 s blocks, and a new playback stream then waits up to 2 s for
                // its first request (the stall that broke the first version of this test).
                "--latency-msec=50",
            ])
            .stdout(file)
            .spawn()
            .map_err(|e| format!("parec: {e}"))?;
        self.recorder = Some((child, raw.to_path_buf()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(raw).map(|m| m.len()).unwrap_or(0) == 0 {
            if Instant::now() > deadline {
                return Err("parec wrote nothing in 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the recorder; returns the recording as (left, right) in [-1, 1).
    pub fn stop_recording(&mut self) -> (Vec<f32>, Vec<f32>) {
        let Some((mut child, raw)) = self.recorder.take() else {
            return (Vec::new(), Vec::new());
        };
        let _ = child.kill();
        let _ = child.wait();
        let bytes = std::fs::read(raw).unwrap_or_default();
        let (mut l, mut r) = (Vec::new(), Vec::new());
        for f in bytes.chunks_exact(4) {
            l.push(i16::from_le_bytes([f[0], f[1]]) as f32 / 32768.0);
            r.push(i16::from_le_bytes([f[2], f[3]]) as f32 / 32768.0);
        }
        (l, r)
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        self.kill_daemon();
    }
}
