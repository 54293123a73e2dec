//! Connection limits: the total (`limits.max_connections`), per address
//! (`max_connections_per_ip` with overrides) and a reserve that only addresses with
//! an override may use, so that one client flooding the listener with sockets can
//! neither lock every other client out nor keep an operator from connecting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tributary_config::Limits;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Total,
    Reserved,
    PerAddress(usize),
}

impl Refusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::Reserved => "reserved",
            Refusal::PerAddress(_) => "max_connections_per_ip",
        }
    }
    pub(crate) fn reason(self) -> String {
        match self {
            Refusal::Total => "limits.max_connections reached".into(),
            Refusal::Reserved => {
                "only reserved connections are left (limits.reserved_connections, for the addresses in \
                 limits.max_connections_per_ip_overrides)"
                    .into()
            }
            Refusal::PerAddress(n) => format!("this address has {n} connections (limits.max_connections_per_ip)"),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// The live connection counts and the limits they are held to.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    max: usize,
    per_address: usize,
    reserved: usize,
    overrides: HashMap<IpAddr, usize>,
    counts: Mutex<Counts>,
}

impl ConnectionLimits {
    pub(crate) fn new(limits: &Limits) -> Self {
        let overrides =
            limits.max_connections_per_ip_overrides.iter().filter_map(|(a, n)| Some((a.parse().ok()?, *n))).collect();
        ConnectionLimits {
            max: limits.max_connections,
            per_address: limits.max_connections_per_ip,
            reserved: limits.reserved_connections,
            overrides,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Counts a new connection from `address`, or says why it is refused.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Slot, Refusal> {
        let address = canonical(address);
        let mut counts = self.counts.lock();
        let over = self.overrides.get(&address).copied();
        if counts.total >= self.max {
            return Err(Refusal::Total);
        }
        if over.is_none() && counts.total >= self.max - self.reserved {
            return Err(Refusal::Reserved);
        }
        let limit = over.unwrap_or(self.per_address);
        let have = counts.by_address.get(&address).copied().unwrap_or(0);
        if have >= limit {
            return Err(Refusal::PerAddress(have));
        }
        counts.total += 1;
        *counts.by_address.entry(address).or_default() += 1;
        Ok(Slot { limits: self.clone(), address })
    }
}

/// An IPv4 address mapped into IPv6 counts as itself.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct Slot {
    limits: Arc<ConnectionLimits>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limits.counts.lock();
        counts.total -= 1;
        if let Some(n) = counts.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_ip: usize, reserved: usize, overrides: &[(&str, usize)]) -> Arc<ConnectionLimits> {
        let l = Limits {
            max_connections: max,
            max_connections_per_ip: per_ip,
            reserved_connections: reserved,
            max_connections_per_ip_overrides: overrides.iter().map(|(a, n)| (a.to_string(), *n)).collect(),
            ..Limits::default()
        };
        Arc::new(ConnectionLimits::new(&l))
    }

    #[test]
    fn one_address_cannot_take_every_slot_and_the_operator_keeps_a_reserve() {
        let l = limits(10, 4, 2, &[("10.0.0.9", 10)]);
        let flood: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..4).map(|_| l.admit(flood).unwrap()).collect();
        assert_eq!(l.admit(flood).unwrap_err(), Refusal::PerAddress(4));
        let others: Vec<_> = (2..6).map(|i| l.admit(format!("10.0.0.{i}").parse().unwrap()).unwrap()).collect();
        // 8 of 10 used: the last 2 are reserved.
        assert_eq!(l.admit("10.0.0.7".parse().unwrap()).unwrap_err(), Refusal::Reserved);
        let operator = [l.admit("10.0.0.9".parse().unwrap()).unwrap(), l.admit("10.0.0.9".parse().unwrap()).unwrap()];
        assert_eq!(l.admit("10.0.0.9".parse().unwrap()).unwrap_err(), Refusal::Total);
        drop(held);
        assert!(l.admit(flood).is_ok());
        drop((others, operator));
        assert_eq!(l.counts.lock().total, 0);
        assert!(l.counts.lock().by_address.is_empty());
    }

    #[test]
    fn a_mapped_ipv4_address_counts_as_itself() {
        let l = limits(10, 1, 0, &[]);
        let _a = l.admit("127.0.0.1".parse().unwrap()).unwrap();
        assert!(l.admit("::ffff:127.0.0.1".parse().unwrap()).is_err());
    }
}
