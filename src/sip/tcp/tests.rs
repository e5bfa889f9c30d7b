use super::*;

const INVITE: &str = "INVITE sip:2001@10.0.0.2 SIP/2.0\r\n\
Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
From: <sip:555@10.0.0.1>;tag=a\r\n\
To: <sip:2001@10.0.0.2>\r\n\
Call-ID: tcp-1\r\n\
CSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 86\r\n\
\r\n\
v=0\r\n\
o=- 1 1 IN IP4 10.0.0.1\r\n\
s=-\r\n\
c=IN IP4 10.0.0.1\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 0\r\n";

const TRYING: &str =
    "SIP/2.0 100 Trying\r\nCall-ID: tcp-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
const RINGING: &str = "SIP/2.0 180 Ringing\r\nCall-ID: tcp-1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";

fn a() -> SocketAddr {
    "10.0.0.1:5060".parse().unwrap()
}
fn b() -> SocketAddr {
    "10.0.0.2:5060".parse().unwrap()
}

/// Feeds `(seq, bytes)` segments from a to b; returns the messages handed on.
fn feed(r: &mut TcpSip, segments: &[(u32, &[u8])]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (seq, bytes)) in segments.iter().enumerate() {
        let now = Timestamp::from_secs_micros(0, 1000 * i as i64);
        r.segment(now, a(), b(), *seq, false, bytes, &mut |m| {
            out.push(String::from_utf8(m.to_vec()).unwrap())
        });
    }
    out
}

#[test]
fn the_sdp_body_is_exactly_content_length() {
    let head_end = INVITE.find("\r\n\r\n").unwrap() + 4;
    assert_eq!(INVITE.len() - head_end, 86);
}

#[test]
fn an_invite_split_inside_its_sdp_is_one_message() {
    let cut = INVITE.find("m=audio").unwrap() + 4;
    let (x, y) = INVITE.as_bytes().split_at(cut);
    let mut r = TcpSip::default();
    let got = feed(&mut r, &[(1000, x), (1000 + x.len() as u32, y)]);
    assert_eq!(got, vec![INVITE.to_string()]);
    assert_eq!(r.stats().messages, 1);
    assert_eq!(r.stats().segments, 2);
}

#[test]
fn a_message_split_in_its_headers_waits_for_the_rest() {
    let mut r = TcpSip::default();
    let (x, y) = INVITE.as_bytes().split_at(40);
    assert!(feed(&mut r, &[(7, x)]).is_empty());
    let mut got = Vec::new();
    r.segment(
        Timestamp::from_secs_micros(0, 5000),
        a(),
        b(),
        47,
        false,
        y,
        &mut |m| got.push(m.len()),
    );
    assert_eq!(got, vec![INVITE.len()]);
}

#[test]
fn two_messages_in_one_segment_are_two() {
    let both = format!("{TRYING}{RINGING}");
    let mut r = TcpSip::default();
    let got = feed(&mut r, &[(1, both.as_bytes())]);
    assert_eq!(got, vec![TRYING.to_string(), RINGING.to_string()]);
}

#[test]
fn a_segment_ending_inside_the_second_message_keeps_the_rest() {
    let all = format!("{TRYING}{INVITE}");
    let cut = TRYING.len() + 100;
    let (x, y) = all.as_bytes().split_at(cut);
    let mut r = TcpSip::default();
    let got = feed(&mut r, &[(1, x), (1 + cut as u32, y)]);
    assert_eq!(got, vec![TRYING.to_string(), INVITE.to_string()]);
}

#[test]
fn a_retransmitted_segment_is_taken_once() {
    let (x, y) = INVITE.as_bytes().split_at(200);
    let mut r = TcpSip::default();
    let got = feed(&mut r, &[(1, x), (1, x), (201, y), (201, y), (1, x)]);
    assert_eq!(got, vec![INVITE.to_string()]);
    assert_eq!(r.stats().retransmitted, 3);
}

#[test]
fn an_overlapping_segment_gives_only_its_new_bytes() {
    let bytes = INVITE.as_bytes();
    let mut r = TcpSip::default();
    // 0..200, then 150..300 (50 old bytes), then the rest.
    let got = feed(
        &mut r,
        &[
            (1, &bytes[..200]),
            (151, &bytes[150..300]),
            (301, &bytes[300..]),
        ],
    );
    assert_eq!(got, vec![INVITE.to_string()]);
    assert_eq!(r.stats().retransmitted, 1);
}

#[test]
fn out_of_order_segments_are_put_in_order() {
    let bytes = INVITE.as_bytes();
    let mut r = TcpSip::default();
    let got = feed(
        &mut r,
        &[
            (1, &bytes[..100]),
            (201, &bytes[200..]),
            (101, &bytes[100..200]),
        ],
    );
    assert_eq!(got, vec![INVITE.to_string()]);
    assert_eq!(r.stats().out_of_order, 1);
}

#[test]
fn a_missing_segment_is_counted_and_the_next_message_is_read() {
    let bytes = INVITE.as_bytes();
    let mut r = TcpSip::default();
    let mut segments: Vec<(u32, &[u8])> = vec![(1, &bytes[..100])];
    // bytes[100..200] never arrive; MAX_AHEAD + 1 later segments give up on them.
    let mut seq = 1 + bytes.len() as u32;
    let mut later = Vec::new();
    for _ in 0..=MAX_AHEAD {
        later.push((seq, TRYING.as_bytes()));
        seq += TRYING.len() as u32;
    }
    segments.push((201, &bytes[200..]));
    segments.extend(later);
    let got = feed(&mut r, &segments);
    assert_eq!(r.stats().lost, 1);
    // Nothing of the broken INVITE; every message after it is read.
    assert!(got.iter().all(|m| m == TRYING), "{got:?}");
    assert_eq!(got.len(), MAX_AHEAD + 1);
    let got = feed(&mut r, &[(seq, RINGING.as_bytes())]);
    assert_eq!(got, vec![RINGING.to_string()]);
}

#[test]
fn a_connection_followed_from_the_middle_starts_at_a_message() {
    let bytes = INVITE.as_bytes();
    let mut r = TcpSip::default();
    // The capture began mid-message: the tail is not SIP to this reader.
    let got = feed(
        &mut r,
        &[
            (501, &bytes[300..]),
            (501 + (bytes.len() - 300) as u32, TRYING.as_bytes()),
        ],
    );
    assert_eq!(got, vec![TRYING.to_string()]);
    assert_eq!(r.directions(), 1);
}

#[test]
fn sequence_numbers_wrap() {
    let (x, y) = INVITE.as_bytes().split_at(100);
    let start = u32::MAX - 49;
    let mut r = TcpSip::default();
    let got = feed(&mut r, &[(start, x), (start.wrapping_add(100), y)]);
    assert_eq!(got, vec![INVITE.to_string()]);
}

#[test]
fn keep_alive_crlf_between_messages_is_skipped() {
    let all = format!("{TRYING}\r\n\r\n{RINGING}");
    let mut r = TcpSip::default();
    let got = feed(&mut r, &[(1, all.as_bytes())]);
    assert_eq!(got, vec![TRYING.to_string(), RINGING.to_string()]);
}

#[test]
fn a_body_larger_than_the_limit_is_garbage_not_a_wait() {
    let huge = format!(
        "INVITE sip:x@y SIP/2.0\r\nContent-Length: {}\r\n\r\n",
        MAX_BUFFER * 2
    );
    let mut r = TcpSip::default();
    let got = feed(&mut r, &[(1, huge.as_bytes())]);
    assert!(got.is_empty());
    assert!(r.stats().garbage > 0);
    // The direction reads the next message start.
    let seq = 1 + huge.len() as u32;
    assert_eq!(feed(&mut r, &[(seq, TRYING.as_bytes())]), vec![TRYING]);
}

#[test]
fn a_direction_never_holds_more_than_the_limit() {
    let mut r = TcpSip::default();
    let start = "INVITE sip:x@y SIP/2.0\r\nContent-Length: 10\r\nX: ";
    let filler = vec![b'a'; 1400];
    let mut seq = 1 + start.len() as u32;
    feed(&mut r, &[(1, start.as_bytes())]);
    for _ in 0..(MAX_BUFFER / 1400 + 2) {
        feed(&mut r, &[(seq, &filler)]);
        seq += 1400;
    }
    assert_eq!(r.stats().lost, 1);
    let d = r.dirs.values().next().unwrap();
    assert!(held(d) <= MAX_BUFFER);
}

#[test]
fn fin_forgets_the_direction_and_idle_ones_make_room() {
    let mut r = TcpSip::default();
    r.segment(
        Timestamp::from_secs_micros(0, 0),
        a(),
        b(),
        1,
        true,
        TRYING.as_bytes(),
        &mut |_| {},
    );
    assert_eq!(r.directions(), 0);
    for i in 0..MAX_DIRECTIONS as u16 + 1 {
        let src = SocketAddr::new(a().ip(), 10_000 + i);
        r.segment(
            Timestamp::from_secs_micros(0, i64::from(i)),
            src,
            b(),
            1,
            false,
            b"OPTIONS sip:x SIP/2.0\r\n",
            &mut |_| {},
        );
    }
    assert_eq!(r.directions(), MAX_DIRECTIONS);
    assert_eq!(r.stats().evicted, 1);
}

#[test]
fn non_sip_connections_are_never_followed() {
    let mut r = TcpSip::default();
    let got = feed(&mut r, &[(1, b"\x16\x03\x01\x02\x00 tls hello")]);
    assert!(got.is_empty());
    assert_eq!(r.directions(), 0);
    assert_eq!(r.stats().segments, 0);
}

#[test]
fn any_split_of_two_messages_gives_both() {
    let all = format!("{INVITE}{TRYING}");
    let bytes = all.as_bytes();
    for cut in 1..bytes.len() {
        let mut r = TcpSip::default();
        let got = feed(
            &mut r,
            &[(9, &bytes[..cut]), (9 + cut as u32, &bytes[cut..])],
        );
        assert_eq!(
            got,
            vec![INVITE.to_string(), TRYING.to_string()],
            "cut {cut}"
        );
    }
}

#[test]
fn a_gap_is_given_up_after_a_while_and_at_fin() {
    let bytes = INVITE.as_bytes();
    let ack = "ACK sip:2001@10.0.0.2 SIP/2.0\r\nCall-ID: tcp-1\r\nContent-Length: 0\r\n\r\n";
    let bye = "BYE sip:2001@10.0.0.2 SIP/2.0\r\nCall-ID: tcp-1\r\nContent-Length: 0\r\n\r\n";
    let at = |s: i64| Timestamp::from_secs_micros(s, 0);
    let mut r = TcpSip::default();
    let mut got = Vec::new();
    let mut on = |m: &[u8]| got.push(String::from_utf8(m.to_vec()).unwrap());
    let after = 1 + bytes.len() as u32;
    // The INVITE's second half never arrives; the ACK waits behind the gap...
    r.segment(at(0), a(), b(), 1, false, &bytes[..100], &mut on);
    r.segment(at(1), a(), b(), after, false, ack.as_bytes(), &mut on);
    // ...until GAP_WAIT has passed when the BYE comes.
    let bye_seq = after + ack.len() as u32;
    r.segment(at(10), a(), b(), bye_seq, false, bye.as_bytes(), &mut on);
    assert_eq!(got, vec![ack.to_string(), bye.to_string()]);
    assert_eq!(r.stats().lost, 1);
    // At FIN what is held is read at once.
    let mut got = Vec::new();
    let mut on = |m: &[u8]| got.push(String::from_utf8(m.to_vec()).unwrap());
    let mut r = TcpSip::default();
    r.segment(at(0), a(), b(), 1, false, &bytes[..100], &mut on);
    r.segment(at(0), a(), b(), after, true, ack.as_bytes(), &mut on);
    assert_eq!(got, vec![ack.to_string()]);
    assert_eq!(r.directions(), 0);
}

#[test]
fn a_held_segment_in_the_middle_of_a_message_is_skipped_not_read() {
    let bytes = INVITE.as_bytes();
    let mut r = TcpSip::default();
    let mut got = Vec::new();
    let mut on = |m: &[u8]| got.push(String::from_utf8(m.to_vec()).unwrap());
    // 100..200 missing: 200.. is the INVITE's tail, then a TRYING, and FIN.
    r.segment(
        Timestamp::default(),
        a(),
        b(),
        1,
        false,
        &bytes[..100],
        &mut on,
    );
    r.segment(
        Timestamp::default(),
        a(),
        b(),
        201,
        false,
        &bytes[200..],
        &mut on,
    );
    let t = 1 + bytes.len() as u32;
    r.segment(
        Timestamp::default(),
        a(),
        b(),
        t,
        true,
        TRYING.as_bytes(),
        &mut on,
    );
    assert_eq!(got, vec![TRYING.to_string()]);
    assert_eq!(r.stats().garbage, (bytes.len() - 200) as u64);
}

#[test]
fn a_gap_expires_on_the_clock_without_another_segment() {
    let all = format!("{TRYING}{RINGING}");
    let mut r = TcpSip::default();
    let at = |ms: i64| Timestamp::from_secs_micros(0, ms * 1000);
    let mut got = Vec::new();
    // The TRYING is missing; the RINGING waits.
    r.segment(
        at(0),
        a(),
        b(),
        1,
        false,
        &all.as_bytes()[..10],
        &mut |_| {},
    );
    let ringing_seq = 1 + TRYING.len() as u32;
    r.segment(
        at(5),
        a(),
        b(),
        ringing_seq,
        false,
        RINGING.as_bytes(),
        &mut |_| {},
    );
    assert_eq!(r.poll_timeout(), Some(at(5) + GAP_WAIT));
    r.handle_timeout(at(500), &mut |_, _, m| got.push(m.to_vec()));
    assert!(got.is_empty(), "a retransmission may still come");
    r.handle_timeout(at(5) + GAP_WAIT, &mut |s, d, m| {
        assert_eq!((s, d), (a(), b()));
        got.push(m.to_vec())
    });
    assert_eq!(got, vec![RINGING.as_bytes().to_vec()]);
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.stats().lost, 1);
}
