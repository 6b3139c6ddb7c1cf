//! The `server` section: listeners, timeouts, response rate limiting (and who is exempt from
//! it) and TCP limits.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::super::wire;
use super::*;

pub(super) fn server(v: &mut V, path: &P, s: &wire::Server) -> ServerConfig {
    let mut dns_listen = Vec::new();
    let listen: Vec<String> = match &s.dns_listen {
        Some(l) => l.as_slice().to_vec(),
        None => vec![DEFAULT_DNS_LISTEN.to_owned()],
    };
    for (i, addr) in listen.iter().enumerate() {
        match addr.parse::<SocketAddr>() {
            Ok(a) if !dns_listen.contains(&a) => dns_listen.push(a),
            Ok(a) => v.err(&path.key("dns_listen").idx(i), format!("{a} is listed more than once")),
            Err(_) => v.err(
                &path.key("dns_listen").idx(i),
                format!("{addr:?} is not an address:port (write IPv6 as \"[::1]:8053\")"),
            ),
        }
    }
    if listen.is_empty() {
        v.err(&path.key("dns_listen"), "at least one address is required");
    }
    let admin_listen = s.admin_listen.as_ref().and_then(|a| {
        a.parse::<SocketAddr>()
            .map_err(|_| v.err(&path.key("admin_listen"), format!("{a:?} is not an address:port")))
            .ok()
    });
    let tcp_timeout = v.duration(&path.key("tcp_timeout"), s.tcp_timeout.as_deref(), DEFAULT_TCP_TIMEOUT);
    let tcp = tcp(v, &path.key("tcp"), s.tcp.as_ref().unwrap_or(&wire::Tcp::default()), tcp_timeout);
    if s.tcp_timeout.is_some() && s.tcp.as_ref().is_some_and(|t| t.idle_timeout.is_some()) {
        v.err(&path.key("tcp_timeout"), "set either tcp_timeout or tcp.idle_timeout, not both");
    }
    ServerConfig {
        dns_listen,
        admin_listen,
        tcp_timeout: tcp.idle_timeout,
        shutdown_grace: v.duration(&path.key("shutdown_grace"), s.shutdown_grace.as_deref(), DEFAULT_SHUTDOWN_GRACE),
        admin_state: None,
        rrl: rrl(v, &path.key("rrl"), s.rrl.as_ref().unwrap_or(&wire::Rrl::default())),
        rrl_exempt: rrl_exempt(v, &path.key("rrl"), s.rrl.as_ref().unwrap_or(&wire::Rrl::default())),
        tcp,
    }
}

/// An integer key in `range`, or the default (with a problem when out of range).
fn bounded(v: &mut V, path: &P, value: Option<i64>, range: std::ops::RangeInclusive<i64>, default: i64) -> i64 {
    match value {
        None => default,
        Some(n) if range.contains(&n) => n,
        Some(n) => {
            v.err(path, format!("{n} is out of range {}-{}", range.start(), range.end()));
            default
        }
    }
}

fn rrl(v: &mut V, path: &P, r: &wire::Rrl) -> RrlConfig {
    let window = v.duration(&path.key("window"), r.window.as_deref(), DEFAULT_RRL_WINDOW);
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&window) {
        v.err(&path.key("window"), "must be between 1s and 1h");
    }
    RrlConfig {
        enabled: r.enabled.unwrap_or(DEFAULT_RRL_ENABLED),
        responses_per_second: bounded(
            v,
            &path.key("responses_per_second"),
            r.responses_per_second,
            1..=100_000,
            i64::from(DEFAULT_RRL_RESPONSES_PER_SECOND),
        ) as u32,
        window: window.clamp(Duration::from_secs(1), Duration::from_secs(3600)),
        slip: bounded(v, &path.key("slip"), r.slip, 0..=10, i64::from(DEFAULT_RRL_SLIP)) as u32,
        ipv4_prefix: bounded(v, &path.key("ipv4_prefix"), r.ipv4_prefix, 0..=32, i64::from(DEFAULT_RRL_IPV4_PREFIX))
            as u8,
        ipv6_prefix: bounded(v, &path.key("ipv6_prefix"), r.ipv6_prefix, 0..=128, i64::from(DEFAULT_RRL_IPV6_PREFIX))
            as u8,
    }
}

/// `exempt` (each a CIDR or an address, host bits clear, listed once) and its two switches.
fn rrl_exempt(v: &mut V, path: &P, r: &wire::Rrl) -> RrlExempt {
    let default: Vec<String> = DEFAULT_RRL_EXEMPT.iter().map(|s| (*s).to_owned()).collect();
    let mut networks: Vec<IpNet> = Vec::new();
    for (i, text) in r.exempt.as_ref().unwrap_or(&default).iter().enumerate() {
        let path = path.key("exempt").idx(i);
        let net = match text.parse::<IpNet>() {
            Ok(net) if net.trunc() != net => {
                v.err(&path, format!("{net} has host bits set; did you mean {}?", net.trunc()));
                continue;
            }
            Ok(net) => net,
            Err(_) => match text.parse::<IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    v.err(&path, format!("{text:?} is not a network (CIDR) or an address"));
                    continue;
                }
            },
        };
        if networks.contains(&net) {
            v.err(&path, format!("{net} is listed more than once"));
        } else {
            networks.push(net);
        }
    }
    RrlExempt {
        networks,
        client_networks: r.exempt_client_networks.unwrap_or(DEFAULT_RRL_EXEMPT_CLIENT_NETWORKS),
        kubernetes: r.exempt_kubernetes.unwrap_or(DEFAULT_RRL_EXEMPT_KUBERNETES),
    }
}

fn tcp(v: &mut V, path: &P, t: &wire::Tcp, idle_default: Duration) -> TcpConfig {
    let idle_timeout = v.duration(&path.key("idle_timeout"), t.idle_timeout.as_deref(), idle_default);
    let read_timeout = v.duration(&path.key("read_timeout"), t.read_timeout.as_deref(), DEFAULT_TCP_READ_TIMEOUT);
    for (key, d) in [("idle_timeout", idle_timeout), ("read_timeout", read_timeout)] {
        if d.is_zero() {
            v.err(&path.key(key), "must be more than 0");
        }
    }
    let max_connections =
        bounded(v, &path.key("max_connections"), t.max_connections, 1..=1_000_000, DEFAULT_TCP_MAX_CONNECTIONS as i64)
            as usize;
    let per_client = bounded(
        v,
        &path.key("max_connections_per_client"),
        t.max_connections_per_client,
        1..=1_000_000,
        DEFAULT_TCP_MAX_CONNECTIONS_PER_CLIENT as i64,
    ) as usize;
    TcpConfig {
        max_connections,
        max_connections_per_client: per_client.min(max_connections),
        idle_timeout,
        read_timeout,
        max_queries_per_connection: bounded(
            v,
            &path.key("max_queries_per_connection"),
            t.max_queries_per_connection,
            1..=1_000_000,
            i64::from(DEFAULT_TCP_MAX_QUERIES_PER_CONNECTION),
        ) as u32,
    }
}
