//! AMQP URLs as users see them: passwords masked in everything dlab prints.

/// `url` with the password (if any) replaced by `****`.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:****@{host}{path}"),
        None => url.to_string(),
    }
}

fn split(url: &str) -> Option<(&str, &str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("", authority),
    };
    Some((scheme, userinfo, hostport, path))
}

/// The host and port an AMQP URL points at (port 5672 when none is given).
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (_, _, hostport, _) = split(url)?;
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((hostport.to_string(), 5672)),
    }
}

/// `url` pointing at `addr` instead, with everything else kept.
pub fn with_host_port(url: &str, addr: std::net::SocketAddr) -> String {
    match split(url) {
        Some((scheme, "", _, path)) => format!("{scheme}://{addr}{path}"),
        Some((scheme, userinfo, _, path)) => format!("{scheme}://{userinfo}@{addr}{path}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_can_be_pointed_at_a_proxy() {
        let url = "amqp://guest:guest@127.0.0.1:5673/%2f";
        assert_eq!(host_port(url), Some(("127.0.0.1".into(), 5673)));
        assert_eq!(
            host_port("amqp://localhost/%2f"),
            Some(("localhost".into(), 5672))
        );
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            with_host_port(url, addr),
            "amqp://guest:guest@127.0.0.1:9/%2f"
        );
        assert_eq!(with_host_port("amqp://h:1", addr), "amqp://127.0.0.1:9");
    }

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask_password("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:****@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            mask_password("amqp://127.0.0.1:5672"),
            "amqp://127.0.0.1:5672"
        );
        assert_eq!(mask_password("amqp://user@h/v"), "amqp://user@h/v");
        assert_eq!(mask_password("amqp://u:p@ss@h/v"), "amqp://u:****@h/v");
    }
}
