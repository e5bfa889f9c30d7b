//! SIP and SDP text of the generated calls: one dialog's messages (requests by either party,
//! their responses) and audio offers/answers.

use std::net::Ipv4Addr;

use crate::Law;

/// An audio SDP body for `ip`:`port` declaring `direction` (sendrecv, sendonly, recvonly).
pub fn sdp(ip: Ipv4Addr, port: u16, law: Law, ptime: u32, direction: &str) -> String {
    format!(
        "v=0\r\no=capgen 1 1 IN IP4 {ip}\r\ns=capgen\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {name}/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:{ptime}\r\na={direction}\r\n",
        pt = law.pt(),
        name = law.sdp()
    )
}

/// One party of a dialog as its From/To headers name it.
pub struct SipParty {
    /// Display name.
    pub display: String,
    /// URI user (the number).
    pub user: String,
    /// URI host and signalling address.
    pub host: Ipv4Addr,
    /// Dialog tag.
    pub tag: String,
}

/// One SIP dialog: its Call-ID, the party that sent the initial INVITE and the one it reached.
pub struct Dialog {
    /// Call-ID.
    pub call_id: String,
    /// The caller (From of the initial INVITE).
    pub caller: SipParty,
    /// The callee (To of the initial INVITE).
    pub callee: SipParty,
}

/// A message's offset from the start of its exchange (µs), whether the caller sends it, and
/// its text.
pub type Timed = (i64, bool, Vec<u8>);

impl Dialog {
    /// One message of a transaction that the caller (`by_caller`) or the callee started: the
    /// requester is in From and Via, responses repeat the request's headers. `to_tagged`: the
    /// dialog is formed (the To header carries its tag).
    pub fn message(
        &self,
        start: &str,
        by_caller: bool,
        to_tagged: bool,
        cseq: &str,
        body: &str,
    ) -> Vec<u8> {
        let (from, to) = if by_caller {
            (&self.caller, &self.callee)
        } else {
            (&self.callee, &self.caller)
        };
        let to_tag = if to_tagged {
            format!(";tag={}", to.tag)
        } else {
            String::new()
        };
        let ctype = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_owned()
        };
        format!(
            "{start}\r\nVia: SIP/2.0/UDP {via}:5060;branch=z9hG4bK{cseq_n}{ftag}\r\n\
             From: \"{fd}\" <sip:{fu}@{fh}>;tag={ftag}\r\n\
             To: \"{td}\" <sip:{tu}@{th}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n\
             Max-Forwards: 70\r\n{ctype}Content-Length: {len}\r\n\r\n{body}",
            via = from.host,
            cseq_n = cseq.split(' ').next().unwrap_or("1"),
            ftag = from.tag,
            fd = from.display,
            fu = from.user,
            fh = from.host,
            td = to.display,
            tu = to.user,
            th = to.host,
            cid = self.call_id,
            len = body.len(),
        )
        .into_bytes()
    }

    /// The caller's INVITE to `ruri_user` with `offer`, 100 Trying, 180 Ringing, 200 OK with
    /// `answer`, ACK.
    pub fn setup(&self, ruri_user: &str, offer: &str, answer: &str) -> [Timed; 5] {
        let host = self.callee.host;
        [
            (
                0,
                true,
                self.message(
                    &format!("INVITE sip:{ruri_user}@{host} SIP/2.0"),
                    true,
                    false,
                    "1 INVITE",
                    offer,
                ),
            ),
            (
                5_000,
                false,
                self.message("SIP/2.0 100 Trying", true, false, "1 INVITE", ""),
            ),
            (
                20_000,
                false,
                self.message("SIP/2.0 180 Ringing", true, true, "1 INVITE", ""),
            ),
            (
                100_000,
                false,
                self.message("SIP/2.0 200 OK", true, true, "1 INVITE", answer),
            ),
            (
                110_000,
                true,
                self.message(
                    &format!("ACK sip:{ruri_user}@{host} SIP/2.0"),
                    true,
                    true,
                    "1 ACK",
                    "",
                ),
            ),
        ]
    }

    /// A request `method` (re-INVITE or BYE) by the caller or the callee within the dialog
    /// (with its `body`), its 200 OK (with `answer`), and for a re-INVITE the ACK. The
    /// flag says whether the caller sends the message.
    pub fn in_dialog(
        &self,
        method: &str,
        by_caller: bool,
        cseq: u32,
        body: &str,
        answer: &str,
    ) -> Vec<Timed> {
        let target = if by_caller {
            &self.callee
        } else {
            &self.caller
        };
        let ruri = format!("sip:{}@{}", target.user, target.host);
        let mut v = vec![
            (
                0,
                by_caller,
                self.message(
                    &format!("{method} {ruri} SIP/2.0"),
                    by_caller,
                    true,
                    &format!("{cseq} {method}"),
                    body,
                ),
            ),
            (
                5_000,
                !by_caller,
                self.message(
                    "SIP/2.0 200 OK",
                    by_caller,
                    true,
                    &format!("{cseq} {method}"),
                    answer,
                ),
            ),
        ];
        if method == "INVITE" {
            v.push((
                10_000,
                by_caller,
                self.message(
                    &format!("ACK {ruri} SIP/2.0"),
                    by_caller,
                    true,
                    &format!("{cseq} ACK"),
                    "",
                ),
            ));
        }
        v
    }
}
