//! silentmon: a SPAN-port silent monitoring appliance for contact centers.
//!
//! The crate map (docs/ARCHITECTURE.md says the same in more words). Dependencies point down
//! this list, never up; the cores (`packet`, `codec`, `flow`, `sip`, `media`, `engine`, `vlantest`) never
//! touch a socket, a clock, libpcap or a sound card.
//!
//! | module    | holds |
//! |-----------|-------|
//! | `cli`     | clap definitions and wiring, one `run` per subcommand; no protocol or policy decision (the only `anyhow` user) |
//! | `config`  | the appliance's and the supervisor endpoint's TOML files, validated; errors name file and key |
//! | `offline` | a capture file through the engine (`flows`, `extract`, `demo --offline`), and `extract`'s choice of streams, second pass and WAV |
//! | `demo`    | the embedded demo: its run directory (capture, private PKI, password), the appliance's and the endpoint's settings, the run's steps (replay gate, mock CTI Server) |
//! | `report`  | the `flows` table and JSON, the text table `ctl` prints lists with |
//! | `capture` | the only code that touches libpcap: files, live NICs (reopened when they fail), paced replays, the capture thread |
//! | `vlantest`| NIC qualification: signature, sample frames, PASS/FAIL tally and report (pure); listen/send shells |
//! | `appliance` | the appliance assembled and run: engine thread, servers, what a control-plane action does, metrics endpoint, audit trail |
//! | `cti`     | the CTI Server feed: protocol codec and client session (sans-IO), the tokio client: agent states, calls and RTP events as a binding source |
//! | `control` | control plane (42028): frame codec, typed requests and replies, session logic deciding logins, rights and every monitor's life (sans-IO), the TLS server and client shells |
//! | `monitor` | monitor service (42228): media/control frame codec, lock-free per-endpoint fanout from the engine thread, grants, one endpoint connection's logic (sans-IO), TLS shell and the endpoint's client |
//! | `peer`    | the cluster's peer link (42029): asking and serving sides (sans-IO cores), their TLS shells, what the cluster knows |
//! | `router`  | the live path: engine + bindings + monitors (mirrored from the control plane), forwarding a monitored agent's RTP |
//! | `security`| monitor-mode lockout, login throttle, audit events, argon2 passwords, the private CA, rustls TLS 1.3 configs |
//! | `binding` | agent -> media endpoint bindings (static, SIP-sniffed, explicit, from the CTI Server) that follow the agent |
//! | `engine`  | the packet path: decapsulate -> classify -> SIP call table + RTP flow table |
//! | `endpoint`| supervisor endpoint: its decisions (`controller`, sans-IO), their shell and local port, the supervisor's page (`desk` sans-IO, `page` HTTP), the media core (per-agent pipeline, mix, recording), media loop, cpal playout, WAV recorder |
//! | `media`   | G.711/Opus decoding and the RTP-timestamp timeline that `extract` renders |
//! | `media::listen` | per-monitor live pipeline: jitter buffer, decode, concealment, CN, DTMF silence, aligned PCM |
//! | `media::output` | rendered PCM -> device frames: mono/stereo, volume, rubato resampling, channel adapter |
//! | `sip`     | SIP message and SDP views, dialogs by Call-ID, media endpoints |
//! | `flow`    | RTP/RTCP streams keyed by 5-tuple + SSRC, RFC 3550 statistics |
//! | `codec`   | payload types, codec names, clock rates |
//! | `packet`  | zero-copy header views and lax decapsulation (one step per layer) |
//! | `time`    | capture timestamps (no clock reads) |
//! | `net`     | dialing the appliance's services and accepting on them: TCP + TLS 1.3 within a timeout, caps, TOS |
//! | `clock`   | the wall clock, for shells only |
// No unsafe code, except the FFI of `endpoint::alsa_log`, `media::g722` (spandsp) and
// `media::g729` (libbcg729), allowed in those modules only.
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod appliance;
pub mod binding;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod control;
pub mod cti;
pub mod demo;
pub mod endpoint;
pub mod engine;
pub mod flow;
pub mod media;
pub mod monitor;
pub mod net;
pub mod offline;
pub mod packet;
pub mod peer;
pub mod report;
pub mod router;
pub mod security;
pub mod sip;
pub mod time;
pub mod vlantest;
