//! The `health_checks` section: probes, their timing and their thresholds.

use super::super::wire;
use super::*;

pub(super) fn health_check(v: &mut V, path: &P, hc: &wire::HealthCheck) -> Option<HealthCheck> {
    let interval = v.duration(&path.key("interval"), hc.interval.as_deref(), DEFAULT_INTERVAL);
    let timeout = v.duration(&path.key("timeout"), hc.timeout.as_deref(), DEFAULT_TIMEOUT.min(interval));
    let jitter = v.duration(&path.key("jitter"), hc.jitter.as_deref(), interval / 10);
    if interval.is_zero() {
        v.err(&path.key("interval"), "must be more than 0");
    }
    if timeout.is_zero() || timeout > interval {
        v.err(&path.key("timeout"), format!("must be more than 0 and at most the interval ({interval:?})"));
    }
    if jitter > interval {
        v.err(&path.key("jitter"), format!("must be at most the interval ({interval:?})"));
    }
    let rise = v.u32(&path.key("rise"), hc.rise, DEFAULT_RISE);
    let fall = v.u32(&path.key("fall"), hc.fall, DEFAULT_FALL);
    for (key, n) in [("rise", rise), ("fall", fall)] {
        if !(1..=100).contains(&n) {
            v.err(&path.key(key), format!("{n} is out of range 1-100"));
        }
    }
    let kinds = [hc.http.is_some(), hc.https.is_some(), hc.tcp.is_some()];
    let probe = match kinds.iter().filter(|k| **k).count() {
        1 => {
            if let Some(t) = &hc.tcp {
                Probe::Tcp { port: v.port(&path.key("tcp").key("port"), t.port) }
            } else {
                let (tls, key, h) = match (&hc.http, &hc.https) {
                    (Some(h), _) => (false, "http", h),
                    (_, Some(h)) => (true, "https", h),
                    _ => unreachable!("exactly one kind is set"),
                };
                http_probe(v, &path.key(key), tls, h)
            }
        }
        0 => {
            v.err(path, "set one of http, https or tcp");
            return None;
        }
        _ => {
            v.err(path, "set only one of http, https or tcp");
            return None;
        }
    };
    Some(HealthCheck { probe, interval, timeout, jitter, rise, fall })
}

fn http_probe(v: &mut V, path: &P, tls: bool, h: &wire::HttpCheck) -> Probe {
    if !tls && h.tls_verify.is_some() {
        v.err(&path.key("tls_verify"), "only applies to https checks");
    }
    let port = h.port.map(|p| v.port(&path.key("port"), p)).unwrap_or(if tls { 443 } else { 80 });
    let path_text = h.path.clone().unwrap_or_else(|| "/".to_owned());
    if !path_text.starts_with('/') {
        v.err(&path.key("path"), format!("{path_text:?} must start with '/'"));
    }
    let expect = match &h.expect {
        None => (200, 399),
        Some(e) => parse_status_range(&e.text()).unwrap_or_else(|| {
            v.err(&path.key("expect"), format!("{:?} is not a status code or range like \"200-399\"", e.text()));
            (200, 399)
        }),
    };
    Probe::Http { tls, tls_verify: h.tls_verify.unwrap_or(true), path: path_text, port, host: h.host.clone(), expect }
}

pub(super) fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
        None => {
            let code = text.trim().parse().ok()?;
            (code, code)
        }
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}
