//! Which addresses a tool may reach. Endpoints are chosen by customers and arguments by a
//! model that reads untrusted text, so by default a tool may not reach this machine, the
//! private network or the cloud's metadata service.
//!
//! The check applies to every address a name resolves to, and the connection goes to the
//! checked addresses: the HTTP client asks [`GuardedResolver`] and nothing else.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is refused, or `None` when it is public.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.to_ipv4_mapped().is_some() {
        return Some("IPv4-mapped");
    }
    let segments = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if segments[0] & 0xffc0 == 0xfe80 || segments[0] & 0xffc0 == 0xfec0 {
        Some("link-local")
    } else if segments[0] & 0xff00 == 0xff00 {
        Some("multicast")
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        Some("documentation")
    } else if embeds_ipv4(&segments) {
        // NAT64, 6to4, Teredo and the old compatible forms can all lead to an IPv4 address.
        Some("IPv4-embedding")
    } else {
        None
    }
}

/// Prefixes under which an IPv6 address carries (or tunnels to) an IPv4 address.
fn embeds_ipv4(segments: &[u16; 8]) -> bool {
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..3] == [0x64, 0xff9b, 1];
    let compatible =
        segments[..6] == [0, 0, 0, 0, 0, 0] || segments[..6] == [0, 0, 0, 0, 0xffff, 0];
    let six_to_four = segments[0] == 0x2002;
    let teredo = segments[0] == 0x2001 && segments[1] == 0;
    nat64 || compatible || six_to_four || teredo
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("CGNAT")
    } else if a == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("multicast or reserved")
    } else if (a, b, c) == (192, 0, 0) || (a == 198 && (b == 18 || b == 19)) {
        Some("reserved")
    } else if [(192, 0, 2), (198, 51, 100), (203, 0, 113)].contains(&(a, b, c)) {
        Some("documentation")
    } else {
        None
    }
}

/// The operator's exceptions (`ANYREPLY_OUTBOUND_ALLOWED_HOSTS`, `ANYREPLY_TOOL_ALLOWED_HOSTS`):
/// host names, addresses and networks that tools and webhooks may reach although they are not
/// public.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    hosts: Vec<String>,
    networks: Vec<IpNet>,
}

impl std::str::FromStr for AddressPolicy {
    type Err = anyhow::Error;

    fn from_str(setting: &str) -> anyhow::Result<Self> {
        Self::parse(setting)
    }
}

impl AddressPolicy {
    /// `crm.internal,10.1.0.0/16,127.0.0.1`: names match exactly (case-insensitive), addresses
    /// and networks match what any name resolves to.
    pub fn parse(setting: &str) -> anyhow::Result<Self> {
        let mut policy = Self::default();
        for entry in setting.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(network) = entry.parse::<IpNet>() {
                policy.networks.push(network);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                policy.networks.push(IpNet::from(ip));
            } else if entry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                policy.hosts.push(entry.to_ascii_lowercase());
            } else {
                anyhow::bail!("{entry:?} is neither a host name, an address nor a network");
            }
        }
        Ok(policy)
    }

    /// Both policies' exceptions.
    pub fn merged(mut self, other: Self) -> Self {
        self.hosts.extend(other.hosts);
        self.networks.extend(other.networks);
        self
    }

    pub fn allows_host(&self, host: &str) -> bool {
        self.hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host.trim_end_matches('.')))
    }

    /// `Err` names the refused class.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), RefusedAddress> {
        match forbidden_class(ip) {
            Some(class) if !self.networks.iter().any(|n| n.contains(&ip)) => {
                Err(RefusedAddress { ip, class })
            }
            _ => Ok(()),
        }
    }
}

/// A tool's endpoint or a webhook's URL resolved to an address it may not reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedAddress {
    pub ip: IpAddr,
    pub class: &'static str,
}

impl std::fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the address {} is {} and not allowed; the server's ANYREPLY_OUTBOUND_ALLOWED_HOSTS can allow it",
            self.ip, self.class
        )
    }
}

impl std::error::Error for RefusedAddress {}

/// Longest wait for a tool's or a webhook receiver's connection to be accepted (the whole call
/// has a timeout of its own).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An HTTP client that connects only where `policy` allows: names are resolved by
/// [`GuardedResolver`] alone; no redirects (one could lead anywhere) and no proxy (it would
/// connect for us, unchecked). Check an address written in a URL with [`literal_address`].
pub fn guarded_client(
    policy: Arc<AddressPolicy>,
    lookup: Lookup,
    timeout: Option<std::time::Duration>,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { policy, lookup }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("anyreply/", env!("CARGO_PKG_VERSION")));
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder.build()
}

/// The address a URL names directly, which no resolver sees.
pub fn literal_address(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(ip.into()),
        url::Host::Ipv6(ip) => Some(ip.into()),
        url::Host::Domain(_) => None,
    }
}

/// The refused address somewhere in `error`'s causes.
pub fn refused_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a RefusedAddress> {
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RefusedAddress>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

/// Looks a host name up. The system resolver in production; tests substitute their own.
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system's resolver, through tokio.
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    })
}

/// The tool client's resolver: a name whose addresses include a refused one is refused whole
/// (a mixed answer is how DNS rebinding starts), unless the operator allowed the name.
#[derive(Clone)]
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
    pub lookup: Lookup,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    pub async fn resolve_checked(
        &self,
        host: &str,
    ) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let addresses = (self.lookup)(host.to_owned()).await?;
        if !self.policy.allows_host(host) {
            for ip in &addresses {
                self.policy.check_ip(*ip)?;
            }
        }
        Ok(addresses)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let addresses = resolver.resolve_checked(name.as_str()).await?;
            let addrs: Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_non_public_class_is_refused() {
        for (ip, class) in [
            ("127.0.0.1", "loopback"),
            ("127.3.4.5", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.254", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.254", "CGNAT"),
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "multicast or reserved"),
            ("224.0.0.1", "multicast or reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:8.8.8.8", "IPv4-mapped"),
            ("64:ff9b::a00:1", "IPv4-embedding"),
            ("64:ff9b:1::a9fe:a9fe", "IPv4-embedding"),
            ("2002:a9fe:a9fe::", "IPv4-embedding"),
            ("2001:0:4136:e378::1", "IPv4-embedding"),
            ("::ffff:0:a9fe:a9fe", "IPv4-embedding"),
            ("fec0::1", "link-local"),
            ("2001:db8::1", "documentation"),
            ("192.0.0.8", "reserved"),
            ("198.18.0.1", "reserved"),
            ("192.0.2.1", "documentation"),
            ("203.0.113.9", "documentation"),
            ("ff02::1", "multicast"),
        ] {
            assert_eq!(forbidden_class(ip.parse().unwrap()), Some(class), "{ip}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert_eq!(forbidden_class(public.parse().unwrap()), None, "{public}");
        }
    }

    #[test]
    fn the_operator_may_allow_hosts_addresses_and_networks() {
        let policy = AddressPolicy::parse("CRM.internal, 10.1.0.0/16,127.0.0.1").unwrap();
        assert!(policy.allows_host("crm.internal"));
        assert!(!policy.allows_host("other.internal"));
        assert!(policy.check_ip("10.1.200.3".parse().unwrap()).is_ok());
        assert!(policy.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert_eq!(
            policy
                .check_ip("10.2.0.1".parse().unwrap())
                .unwrap_err()
                .class,
            "private"
        );
        assert!(AddressPolicy::parse("not a host!").is_err());
    }

    fn resolver(policy: &str, answers: &'static [&'static str]) -> GuardedResolver {
        GuardedResolver {
            policy: Arc::new(AddressPolicy::parse(policy).unwrap()),
            lookup: Arc::new(move |_| {
                Box::pin(async move { Ok(answers.iter().map(|a| a.parse().unwrap()).collect()) })
            }),
        }
    }

    #[tokio::test]
    async fn a_name_is_refused_if_any_of_its_addresses_is() {
        let rebinding = resolver("", &["93.184.216.34", "10.0.0.5"]);
        let error = rebinding.resolve_checked("evil.example").await.unwrap_err();
        assert_eq!(
            error.downcast_ref::<RefusedAddress>().unwrap().class,
            "private"
        );
        let public = resolver("", &["93.184.216.34"]);
        assert_eq!(
            public.resolve_checked("example.com").await.unwrap().len(),
            1
        );
        let metadata = resolver("", &["169.254.169.254"]);
        assert!(metadata.resolve_checked("metadata.internal").await.is_err());
        let allowed = resolver("crm.internal", &["10.0.0.5"]);
        assert!(allowed.resolve_checked("crm.internal").await.is_ok());
    }
}
