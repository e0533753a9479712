//! Who the client is: the peer's address, or, when the peer is a trusted
//! proxy (`TRUSTED_PROXIES`), the address the proxies say they were called
//! from: the rightmost hop of `Forwarded` (or, without it, of
//! `X-Forwarded-For`) that is not itself a trusted proxy. Headers from an
//! untrusted peer are ignored: anyone can write them.
//!
//! Written by hand: the rule is a few lines, and the crates that parse
//! `Forwarded` do not walk the hops against a list of trusted networks.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client's address, given the peer's and the request's headers.
pub fn address(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut nearest = peer;
    for hop in hops(headers).iter().rev() {
        match hop {
            Some(ip) if is_trusted(ip) => nearest = *ip,
            Some(ip) => return Some(*ip),
            // A hop no one can read: the proxy nearest it is all that is known.
            None => return Some(nearest),
        }
    }
    Some(nearest)
}

/// The hops the proxies recorded, nearest the client first: the `for=` of
/// every `Forwarded` element, or else every `X-Forwarded-For` entry. `None`
/// for one that is not an address (`unknown`, an obfuscated name, garbage).
fn hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<Option<IpAddr>> = headers
        .get_all("forwarded")
        .iter()
        .flat_map(|value| value.to_str().unwrap_or(",").split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, node)| node_address(node.trim().trim_matches('"')))
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.to_str().unwrap_or(",").split(','))
        .map(|entry| node_address(entry.trim()))
        .collect()
}

/// The address of a node as proxies write it: `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`.
fn node_address(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse().ok().or_else(|| {
        let (host, port) = node.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let said = headers(&[("x-forwarded-for", "203.0.113.9"), ("forwarded", "for=203.0.113.9")]);
        assert_eq!(address(ip("198.51.100.7"), &said, &[]), ip("198.51.100.7"));
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(address(ip("198.51.100.7"), &said, &trusted), ip("198.51.100.7"));
    }

    #[test]
    fn through_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "2001:db8:1::/48".parse().unwrap()];
        let peer = ip("10.0.0.1");
        // The client wrote a hop of its own first: it is not believed.
        let xff = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(address(peer, &xff, &trusted), ip("203.0.113.9"));
        let split = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "203.0.113.9:5555")]);
        assert_eq!(address(peer, &split, &trusted), ip("203.0.113.9"));
        let forwarded = headers(&[(
            "forwarded",
            "for=1.2.3.4, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=\"[2001:db8:1::2]\"",
        )]);
        assert_eq!(address(peer, &forwarded, &trusted), ip("2001:db8:cafe::17"));
        let both = headers(&[("forwarded", "for=203.0.113.5"), ("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(address(peer, &both, &trusted), ip("203.0.113.5"), "Forwarded wins");
        assert_eq!(address(peer, &HeaderMap::new(), &trusted), peer, "no hops: the proxy");
        let unreadable = headers(&[("x-forwarded-for", "203.0.113.9, garbage, 10.0.0.3")]);
        assert_eq!(address(peer, &unreadable, &trusted), ip("10.0.0.3"));
        let all_trusted = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(address(peer, &all_trusted, &trusted), ip("10.1.1.1"));
    }
}
