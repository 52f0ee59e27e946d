//! Outbound HTTP for the steps that talk to other services (`http`, the pull-request steps,
//! the Argo CD steps): a [`reqwest`] client that refuses link-local and cloud-metadata
//! destinations (server-side request forgery protection, reference §8).
//!
//! - Host names are resolved by [`GuardedResolver`]: every resolved address is checked and
//!   the name is refused if any of them is blocked, so the client only ever connects to
//!   addresses that were checked (a DNS answer that mixes a public and a metadata address
//!   is refused as a whole).
//! - Literal IP hosts (which a resolver never sees) and well-known metadata host names
//!   are checked by [`check_url`] before the request is sent.
//! - Redirects are followed (at most 10) only after the same [`check_url`] check of each
//!   new location; its host name then goes through the resolver again.
//! - Proxies from the environment are ignored; a configured proxy is itself resolved by
//!   the guarded resolver, but the target behind it is only checked by [`check_url`].
//!
//! Loopback and private (RFC 1918) addresses stay allowed, as in Kargo.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Host names of cloud metadata services, refused whatever they resolve to.
pub const BLOCKED_HOST_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.internal",
    "instance-data",
    "instance-data.ec2.internal",
];

/// A destination refused by the SSRF rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to connect to {what}: link-local and cloud metadata addresses are blocked")]
pub struct BlockedDestination {
    /// The refused host or address.
    pub what: String,
}

/// Whether `ip` is a link-local or cloud-metadata address: 169.254.0.0/16, fe80::/10,
/// `fd00:ec2::254` (AWS IMDS over IPv6), 100.100.100.200 (Alibaba Cloud), and the same
/// IPv4 addresses embedded in IPv6 (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`).
pub fn is_blocked_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_blocked_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_blocked_v4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let v4 = Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    (s[6] & 0xff) as u8,
                    (s[7] >> 8) as u8,
                    (s[7] & 0xff) as u8,
                );
                return is_blocked_v4(v4);
            }
            (s[0] & 0xffc0) == 0xfe80 || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

fn is_blocked_v4(v4: Ipv4Addr) -> bool {
    v4.is_link_local() || v4 == Ipv4Addr::new(100, 100, 100, 200)
}

/// Whether `host` (a name, lowercase or not, with or without a trailing dot) is a known
/// metadata host name.
pub fn is_blocked_host_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    BLOCKED_HOST_NAMES.contains(&h.as_str())
}

/// Checks what can be checked of `url` without DNS: a literal IP host must not be blocked,
/// a host name must not be a metadata name.
pub fn check_url(url: &Url) -> Result<(), BlockedDestination> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) if is_blocked_ip(IpAddr::V4(ip)) => Err(BlockedDestination {
            what: ip.to_string(),
        }),
        Some(url::Host::Ipv6(ip)) if is_blocked_ip(IpAddr::V6(ip)) => Err(BlockedDestination {
            what: ip.to_string(),
        }),
        Some(url::Host::Domain(d)) => {
            if is_blocked_host_name(d) {
                return Err(BlockedDestination { what: d.to_owned() });
            }
            // `http://169.254.169.254.` or an IP spelled as a domain by a lenient parser.
            if let Ok(ip) = d.trim_end_matches('.').parse::<IpAddr>()
                && is_blocked_ip(ip)
            {
                return Err(BlockedDestination { what: d.to_owned() });
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A DNS resolver that refuses names resolving to a blocked address (see the module
/// documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if is_blocked_host_name(&host) {
                return Err(Box::new(BlockedDestination { what: host }) as _);
            }
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_blocked_ip(a.ip())) {
                return Err(Box::new(BlockedDestination {
                    what: format!("{host} ({})", bad.ip()),
                }) as _);
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The redirect policy: at most 10 redirects, each new location checked by [`check_url`].
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 10 {
            return attempt.error("too many redirects");
        }
        match check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    })
}

/// A client builder with the guarded resolver, the checked redirect policy and no
/// environment proxies.
pub fn guarded_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver))
        .redirect(redirect_policy())
        .no_proxy()
}

/// Whether an error (or one of its sources) is a [`BlockedDestination`]; returns it.
pub fn blocked_cause(e: &(dyn std::error::Error + 'static)) -> Option<BlockedDestination> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<BlockedDestination>() {
            return Some(b.clone());
        }
        cur = err.source();
    }
    None
}

/// `url` for messages: no user info, no query, no fragment (tokens travel in both).
pub fn shown_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Describes a reqwest error without its URL (which may carry credentials); names a
/// blocked destination when that was the cause.
pub fn describe_reqwest_error(e: reqwest::Error) -> (String, Option<BlockedDestination>) {
    if let Some(b) = blocked_cause(&e) {
        return (b.to_string(), Some(b));
    }
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(s) = cur {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        cur = s.source();
    }
    if timeout && !msg.contains("timed out") {
        msg.push_str(" (timed out)");
    }
    (msg, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_link_local_and_metadata_addresses() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "169.254.170.2",
            "100.100.100.200",
            "fe80::1",
            "febf::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_blocked_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "8.8.8.8",
            "::1",
            "fd00::1",
            "fec0::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_blocked_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn checks_literal_hosts_and_metadata_names() {
        let bad = [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1%25eth0]/",
            "http://[fd00:ec2::254]/",
            "http://0xa9fea9fe/",
            "http://2852039166/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.GOOGLE.INTERNAL./",
        ];
        for u in bad {
            let Ok(url) = Url::parse(u) else {
                continue; // a URL the parser refuses cannot be requested either
            };
            assert!(check_url(&url).is_err(), "{u}");
        }
        for u in [
            "http://127.0.0.1:8080/x",
            "https://example.com/",
            "http://[::1]/",
        ] {
            assert!(check_url(&Url::parse(u).unwrap()).is_ok(), "{u}");
        }
    }

    #[tokio::test]
    async fn resolver_refuses_metadata_names_and_allows_localhost() {
        let r = GuardedResolver;
        let name: Name = "metadata.google.internal".parse().unwrap();
        assert!(r.resolve(name).await.is_err());
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<_> = r.resolve(name).await.unwrap().collect();
        assert!(!addrs.is_empty());
    }

    #[test]
    fn shown_url_hides_user_info_and_query() {
        let u = Url::parse("https://user:pw@h.example/p?token=abc#f").unwrap();
        assert_eq!(shown_url(&u), "https://h.example/p");
    }
}
