//! Placement simulation: for each broker count and partition count, the max/avg load
//! and the partitions moved when a broker joins and when one leaves, against the
//! optimal (the fair share of the joiner, the leaver's partitions), for consistent
//! hashing with bounded loads, plain consistent hashing and modulo hashing.
//!
//! cargo run --release --manifest-path bench/placement/Cargo.toml -- [--brokers 3,10,100,1000]
//!     [--partitions 10000,100000,1000000] [--balance-factor 1.25]

use std::time::Instant;

use tributary_placement::{optimal_moves, partition_key, Item, Member, Ring};

fn list(args: &[String], flag: &str, default: &[usize]) -> Vec<usize> {
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1].split(',').map(|v| v.trim().parse().expect("a number")).collect(),
        None => default.to_vec(),
    }
}

#[derive(Clone, Copy)]
enum Scheme {
    Bounded(f64),
    Plain,
    Modulo,
}

fn place(scheme: Scheme, members: &[Member], items: &[Item]) -> Vec<i32> {
    match scheme {
        Scheme::Bounded(c) => Ring::new(members).unwrap().place(items, Some(c)).unwrap().owners,
        Scheme::Plain => Ring::new(members).unwrap().place(items, None).unwrap().owners,
        Scheme::Modulo => {
            let mut ids: Vec<i32> = members.iter().map(|m| m.id).collect();
            ids.sort_unstable();
            items.iter().map(|i| ids[(i.key % ids.len() as u64) as usize]).collect()
        }
    }
}

fn max_over_avg(owners: &[i32], brokers: usize) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for o in owners {
        *counts.entry(*o).or_insert(0usize) += 1;
    }
    let max = counts.values().copied().max().unwrap_or(0);
    max as f64 / (owners.len() as f64 / brokers as f64)
}

fn moved(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let brokers = list(&args, "--brokers", &[3, 10, 100, 1000]);
    let partitions = list(&args, "--partitions", &[10_000, 100_000, 1_000_000]);
    let c = args
        .iter()
        .position(|a| a == "--balance-factor")
        .map(|i| args[i + 1].parse().expect("a number"))
        .unwrap_or(1.25);
    println!(
        "{:>7} {:>9} {:<14} {:>8} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>9}",
        "brokers",
        "parts",
        "scheme",
        "max/avg",
        "join-moves",
        "optimal",
        "x-opt",
        "leave-moves",
        "optimal",
        "x-opt",
        "place-ms"
    );
    for &n in &brokers {
        for &p in &partitions {
            if p < n {
                continue;
            }
            // 100 partitions a topic, as a cluster has them.
            let items: Vec<Item> = (0..p)
                .map(|i| Item { key: partition_key(&format!("topic-{}", i / 100), (i % 100) as i32), load: 1 })
                .collect();
            let base: Vec<Member> = (0..n as i32).map(|id| Member { id, weight: 1 }).collect();
            let mut grown = base.clone();
            grown.push(Member { id: n as i32, weight: 1 });
            let leaver = (n / 2) as i32;
            let shrunk: Vec<Member> = base.iter().filter(|m| m.id != leaver).copied().collect();
            for (name, scheme) in [
                (format!("bounded c={c}"), Scheme::Bounded(c)),
                ("plain-ring".to_string(), Scheme::Plain),
                ("modulo".to_string(), Scheme::Modulo),
            ] {
                let started = Instant::now();
                let before = place(scheme, &base, &items);
                let place_ms = started.elapsed().as_secs_f64() * 1e3;
                let after_join = place(scheme, &grown, &items);
                let opt_join = optimal_moves(p, &base, &grown);
                let join = moved(&before, &after_join);
                if n < 2 {
                    continue;
                }
                let after_leave = place(scheme, &shrunk, &items);
                let opt_leave = optimal_moves(p, &base, &shrunk).max(1);
                let leave = moved(&before, &after_leave);
                println!(
                    "{:>7} {:>9} {:<14} {:>8.3} {:>10} {:>10} {:>7.2} {:>10} {:>10} {:>7.2} {:>9.0}",
                    n,
                    p,
                    name,
                    max_over_avg(&before, n),
                    join,
                    opt_join,
                    join as f64 / opt_join.max(1) as f64,
                    leave,
                    opt_leave,
                    leave as f64 / opt_leave as f64,
                    place_ms
                );
            }
        }
    }
}
