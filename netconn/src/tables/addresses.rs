//! The namespace's own addresses.

use std::collections::HashSet;
use std::io;
use std::net::IpAddr;

/// The namespace's own addresses (getifaddrs), canonical form.
pub fn local_addresses() -> io::Result<HashSet<IpAddr>> {
    let addrs = nix::ifaddrs::getifaddrs()?;
    Ok(addrs
        .filter_map(|ifa| {
            let a = ifa.address?;
            match (a.as_sockaddr_in(), a.as_sockaddr_in6()) {
                (Some(v4), _) => Some(IpAddr::from(v4.ip())),
                (_, Some(v6)) => Some(IpAddr::from(v6.ip())),
                _ => None,
            }
        })
        .collect())
}
