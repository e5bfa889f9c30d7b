//! SIP and SDP, sans-IO: message and SDP views ([`message`], [`sdp`]) and the call table
//! ([`call`]) that turns dialogs into calls with parties, states and negotiated media endpoints,
//! and the reassembly of SIP carried over TCP ([`tcp`]).
//! Never panics on input; parse failures are values the engine counts.

pub mod call;
pub mod message;
pub mod sdp;
pub mod tcp;

pub use call::{
    Call, CallConfig, CallEvent, CallState, CallTable, MediaEndpoint, Party, SideIdentity, SipStats,
};
pub use message::{looks_like_sip, Method, SipMessage};
pub use sdp::{Direction, SessionDescription};

/// Why a SIP message or SDP body did not parse.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The header block never ends (no empty line).
    #[error("incomplete SIP message (no end of headers)")]
    Incomplete,
    /// The start line is neither a request nor a status line.
    #[error("bad SIP start line")]
    StartLine,
    /// Content-Length is not a number or exceeds the data.
    #[error("bad Content-Length")]
    ContentLength,
    /// Headers or body are not UTF-8.
    #[error("SIP message is not UTF-8")]
    NotUtf8,
    /// The SDP body lacks v= or has a bad m= line.
    #[error("bad SDP body")]
    Sdp,
}
