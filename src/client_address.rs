//! The client address that rate limits count: the socket's peer, or, behind
//! a trusted reverse proxy, the address that proxy reports.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;

/// Returns the address to count failed logins against. With
/// `trust_proxy_headers`, it is the last address in `X-Forwarded-For`: the
/// entry that the nearest proxy appended, which a client cannot forge,
/// unlike the entries before it. `Forwarded` is ignored, because proxies
/// that append to `X-Forwarded-For` (nginx, HAProxy, most load balancers)
/// pass a client's own `Forwarded` header through untouched. Without the
/// setting, or when the header has no usable address, it is the socket's
/// peer.
pub fn client_address(request: &HttpRequest, trust_proxy_headers: bool) -> Option<IpAddr> {
    let peer = request.peer_addr().map(|address| address.ip());
    if !trust_proxy_headers {
        return peer;
    }
    forwarded_for(request.headers()).or(peer)
}

fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .next_back()
        .and_then(|entry| parse_node(entry.trim()))
}

/// Parses an `X-Forwarded-For` entry: an IPv4 address, a bracketed or bare
/// IPv6 address, either possibly with a port and in quotes.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    if let Ok(address) = node.parse() {
        return Some(address);
    }
    // IPv4 with a port.
    node.rsplit_once(':')
        .and_then(|(host, _)| host.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn last_forwarded_address_wins() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (
                &[("x-forwarded-for", "203.0.113.9, 198.51.100.4")],
                Some("198.51.100.4"),
            ),
            (
                &[
                    ("x-forwarded-for", "1.1.1.1"),
                    ("x-forwarded-for", "198.51.100.4"),
                ],
                Some("198.51.100.4"),
            ),
            (
                &[("x-forwarded-for", "203.0.113.9, [2001:db8::1]:4711")],
                Some("2001:db8::1"),
            ),
            (
                &[("x-forwarded-for", "192.0.2.60:8080")],
                Some("192.0.2.60"),
            ),
            (
                &[
                    ("forwarded", "for=192.0.2.60"),
                    ("x-forwarded-for", "198.51.100.4"),
                ],
                Some("198.51.100.4"),
            ),
            (&[("forwarded", "for=192.0.2.60")], None),
            (&[("x-forwarded-for", "198.51.100.4, not-an-address")], None),
            (&[], None),
        ];
        for (pairs, expected) in cases {
            let expected = expected.map(|address| address.parse::<IpAddr>().unwrap());
            assert_eq!(forwarded_for(&headers(pairs)), expected, "{pairs:?}");
        }
    }
}
