//! Who may use the page, decided per request (pure): the per-start secret token (in the URL
//! the endpoint prints, then in a cookie), a Host header naming this loopback listener (a page
//! reached through DNS rebinding names another host), and for every state-changing request an
//! Origin that is this listener (another page in the same browser, even on another loopback
//! port, has another origin).

/// The cookie that carries the token after the first visit.
pub const COOKIE: &str = "silentmon_page";

/// The hosts the page answers to, with the listener's `port`.
fn our_hosts(port: u16) -> [String; 3] {
    [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ]
}

/// Whether a Host header names this listener.
pub fn host_ok(host: Option<&str>, port: u16) -> bool {
    let Some(h) = host else { return false };
    let h = h.trim().to_ascii_lowercase();
    our_hosts(port).contains(&h)
}

/// Whether an Origin header is this listener's (a state-changing request must have one).
pub fn origin_ok(origin: Option<&str>, port: u16) -> bool {
    let Some(o) = origin else { return false };
    let o = o.trim().to_ascii_lowercase();
    our_hosts(port).iter().any(|h| o == format!("http://{h}"))
}

/// The token a request presents: `token=` in the query, else the cookie.
pub fn presented<'a>(query: Option<&'a str>, cookies: Option<&'a str>) -> Option<&'a str> {
    let from_query = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .filter(|t| !t.is_empty())
    });
    from_query.or_else(|| {
        cookies?.split(';').find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == COOKIE).then_some(v)
        })
    })
}

/// Compares tokens in time independent of where they differ.
pub fn token_ok(presented: Option<&str>, token: &str) -> bool {
    let Some(p) = presented else { return false };
    let (a, b) = (p.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_listener_is_a_host_or_an_origin() {
        assert!(host_ok(Some("127.0.0.1:4223"), 4223));
        assert!(host_ok(Some("LOCALHOST:4223"), 4223));
        assert!(host_ok(Some("[::1]:4223"), 4223));
        for bad in [
            None,
            Some("127.0.0.1:80"),
            Some("evil.example:4223"),
            Some("127.0.0.1"),
            Some("127.0.0.1:4223.evil.example"),
        ] {
            assert!(!host_ok(bad, 4223), "{bad:?}");
        }
        assert!(origin_ok(Some("http://127.0.0.1:4223"), 4223));
        assert!(origin_ok(Some("http://localhost:4223"), 4223));
        for bad in [
            None,
            Some("null"),
            Some("http://127.0.0.1:4224"),
            Some("https://127.0.0.1:4223"),
            Some("http://evil.example"),
        ] {
            assert!(!origin_ok(bad, 4223), "{bad:?}");
        }
    }

    #[test]
    fn the_token_comes_from_the_query_or_the_cookie_and_must_match_exactly() {
        let t = "0123456789abcdef0123456789abcdef";
        assert!(token_ok(presented(Some(&format!("token={t}")), None), t));
        let cookie = format!("a=b; {COOKIE}={t}; c=d");
        assert!(token_ok(presented(None, Some(&cookie)), t));
        assert!(token_ok(presented(Some("x=1"), Some(&cookie)), t));
        assert!(!token_ok(presented(None, None), t));
        assert!(!token_ok(presented(Some("token="), None), t));
        assert!(!token_ok(presented(Some("token=0123"), None), t));
        let wrong = format!("{}0", &t[..31]);
        assert!(!token_ok(Some(&wrong), t));
        assert!(!token_ok(presented(None, Some("other=x")), t));
    }
}
