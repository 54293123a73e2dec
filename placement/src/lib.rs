//! Partition placement by consistent hashing with bounded loads (Mirrokni, Thorup and
//! Zadimoghaddam, "Consistent Hashing with Bounded Loads", SODA 2018).
//!
//! Every broker puts `VNODES_PER_WEIGHT x weight` virtual nodes on a ring of 64-bit
//! hashes. Items (partitions) are placed one after another in the order of their own
//! hash: an item starts at its point and walks clockwise to the first broker whose
//! load plus the item's load stays within that broker's bound,
//! `ceil(c x total load x weight / total weight)`, with `c = 1 + epsilon` the balance
//! factor. With unit loads (partition counts) the bounds add up to at least the total,
//! so no broker ever exceeds its bound; with measured loads an item that fits nowhere
//! (larger than every broker's room) goes to the broker with the most room left.
//!
//! The answer depends only on the brokers (id, weight), the items (key, load) and
//! `c`: every broker computes the same placement from the same input, and a join or
//! a leave moves about the optimal share of items (1/N) plus the few that the changed
//! bounds push along the ring.
//!
//! This crate is pure: no I/O, no clock, no randomness, no async, so it can be
//! property-tested and simulated at a million partitions (`bench/placement`).

#![forbid(unsafe_code)]

use std::collections::HashMap;

/// Virtual nodes per unit of weight. More points spread a plain ring more evenly;
/// with bounded loads the bound does the balancing and the points mostly decide
/// which items move when a broker joins or leaves.
pub const VNODES_PER_WEIGHT: u32 = 100;

/// The largest weight a broker may carry (its share is `weight / total weight`).
pub const MAX_WEIGHT: u32 = 100;

/// A broker that can own items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub id: i32,
    /// Relative capacity, 1..=[`MAX_WEIGHT`].
    pub weight: u32,
}

/// Something to place: a partition, with its hash and its load (1 for a partition
/// count, or measured bytes/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub key: u64,
    pub load: u64,
}

/// The stable 64-bit hash of a partition: FNV-1a over `topic`, a zero byte and the
/// partition number, finished with the splitmix64 mixer. Never change it: every
/// partition's place depends on it.
pub fn partition_key(topic: &str, partition: i32) -> u64 {
    let mut h = Fnv::new();
    h.write(topic.as_bytes());
    h.write(&[0]);
    h.write(&partition.to_be_bytes());
    mix(h.0)
}

fn vnode_key(broker: i32, replica: u32) -> u64 {
    let mut h = Fnv::new();
    h.write(b"broker");
    h.write(&broker.to_be_bytes());
    h.write(&replica.to_be_bytes());
    mix(h.0)
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// splitmix64's finaliser: FNV's low bits are weak, this spreads every input bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Why a placement cannot be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum PlacementError {
    NoMembers,
    DuplicateMember(i32),
    BadWeight { broker: i32, weight: u32 },
    BadBalanceFactor(f64),
}

impl std::fmt::Display for PlacementError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlacementError::NoMembers => write!(f, "no brokers to place partitions on"),
            PlacementError::DuplicateMember(id) => write!(f, "broker {id} is listed twice"),
            PlacementError::BadWeight { broker, weight } => {
                write!(f, "broker {broker} has weight {weight}; weights are 1..={MAX_WEIGHT}")
            }
            PlacementError::BadBalanceFactor(c) => write!(f, "balance factor {c} must be a finite number >= 1"),
        }
    }
}

impl std::error::Error for PlacementError {}

/// The ring of virtual nodes of a set of brokers.
#[derive(Debug, Clone)]
pub struct Ring {
    members: Vec<Member>,
    /// (point, index into `members`), sorted by point then index.
    points: Vec<(u64, u32)>,
}

impl Ring {
    pub fn new(members: &[Member]) -> Result<Ring, PlacementError> {
        if members.is_empty() {
            return Err(PlacementError::NoMembers);
        }
        let mut members = members.to_vec();
        members.sort_by_key(|m| m.id);
        for pair in members.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(PlacementError::DuplicateMember(pair[0].id));
            }
        }
        let mut points = Vec::new();
        for (index, m) in members.iter().enumerate() {
            if m.weight == 0 || m.weight > MAX_WEIGHT {
                return Err(PlacementError::BadWeight { broker: m.id, weight: m.weight });
            }
            let index = u32::try_from(index).expect("fewer than 2^32 brokers");
            for replica in 0..VNODES_PER_WEIGHT * m.weight {
                points.push((vnode_key(m.id, replica), index));
            }
        }
        points.sort_unstable();
        Ok(Ring { members, points })
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The bound of every member for a total load and balance factor `c`:
    /// `ceil(c x total x weight / total weight)`.
    pub fn bounds(&self, total_load: u64, c: f64) -> Vec<u64> {
        let total_weight: u64 = self.members.iter().map(|m| u64::from(m.weight)).sum();
        self.members
            .iter()
            .map(|m| {
                let share = c * total_load as f64 * f64::from(m.weight) / total_weight as f64;
                // A tiny tolerance so c x n that is an integer in exact arithmetic
                // does not round up by one through floating point.
                (share - 1e-9).ceil().max(0.0) as u64
            })
            .collect()
    }

    /// Places `items` with balance factor `c` (`None`: plain consistent hashing, no
    /// bound). Items are taken in the order of their keys, so the input order does not
    /// matter. Returns the owner of every item, in the input order.
    pub fn place(&self, items: &[Item], c: Option<f64>) -> Result<Placement, PlacementError> {
        if let Some(c) = c {
            if !c.is_finite() || c < 1.0 {
                return Err(PlacementError::BadBalanceFactor(c));
            }
        }
        let total: u64 = items.iter().map(|i| i.load).sum();
        let bounds = match c {
            Some(c) => self.bounds(total, c),
            None => vec![u64::MAX; self.members.len()],
        };
        let mut loads = vec![0u64; self.members.len()];
        let mut owner = vec![0u32; items.len()];
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_unstable_by_key(|&i| (items[i].key, i));
        let mut seen = vec![u32::MAX; self.members.len()];
        for (round, &i) in order.iter().enumerate() {
            let item = items[i];
            let start = self.points.partition_point(|&(p, _)| p < item.key);
            let mut chosen = None;
            let mut distinct = 0usize;
            let round = round as u32;
            for step in 0..self.points.len() {
                let (_, m) = self.points[(start + step) % self.points.len()];
                let m = m as usize;
                if seen[m] == round {
                    continue;
                }
                seen[m] = round;
                distinct += 1;
                if loads[m].saturating_add(item.load) <= bounds[m] {
                    chosen = Some(m);
                    break;
                }
                if distinct == self.members.len() {
                    break;
                }
            }
            // Fits nowhere (only possible with unequal loads): the most room left.
            let m = chosen.unwrap_or_else(|| {
                (0..self.members.len())
                    .max_by_key(|&m| (bounds[m] as i128 - loads[m] as i128, std::cmp::Reverse(m)))
                    .expect("a ring has members")
            });
            loads[m] += item.load;
            owner[i] = m as u32;
        }
        Ok(Placement {
            owners: owner.iter().map(|&m| self.members[m as usize].id).collect(),
            loads: self.members.iter().zip(&loads).map(|(m, &l)| (m.id, l)).collect(),
            bounds: self.members.iter().zip(&bounds).map(|(m, &b)| (m.id, b)).collect(),
        })
    }
}

/// Where every item went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The owner of each item, in the order the items were given.
    pub owners: Vec<i32>,
    /// Each member's load, by id.
    pub loads: Vec<(i32, u64)>,
    /// Each member's bound, by id (`u64::MAX` when unbounded).
    pub bounds: Vec<(i32, u64)>,
}

impl Placement {
    /// How many items have another owner in `other` (same items, same order).
    pub fn moves_from(&self, other: &Placement) -> usize {
        self.owners.iter().zip(&other.owners).filter(|(a, b)| a != b).count()
    }

    pub fn max_load(&self) -> u64 {
        self.loads.iter().map(|&(_, l)| l).max().unwrap_or(0)
    }

    pub fn load_of(&self) -> HashMap<i32, u64> {
        self.loads.iter().copied().collect()
    }
}

/// The fewest moves any placement needs when `new` members replace `old` (items on a
/// leaving member must move; a joining member must receive its fair share): the
/// number of items on the members that left, or the fair share of the joined ones.
pub fn optimal_moves(items: usize, old: &[Member], new: &[Member]) -> usize {
    let share = |set: &[Member], of: &[Member]| -> f64 {
        let total: u64 = of.iter().map(|m| u64::from(m.weight)).sum();
        let part: u64 = set.iter().map(|m| u64::from(m.weight)).sum();
        part as f64 / total as f64
    };
    let left: Vec<Member> = old.iter().filter(|m| !new.iter().any(|n| n.id == m.id)).copied().collect();
    let joined: Vec<Member> = new.iter().filter(|m| !old.iter().any(|o| o.id == m.id)).copied().collect();
    let out = share(&left, old) * items as f64;
    let inn = share(&joined, new) * items as f64;
    out.max(inn).round() as usize
}

#[cfg(test)]
mod tests;
