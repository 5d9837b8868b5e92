//! Round-trip times between simulated nodes, as on the internet.
//!
//! Each node sits in one of six cloud regions (drawn with the weights below) behind a last
//! mile of its own (2 to 20 ms of round trip, drawn uniformly); the round trip between
//! two nodes is the one between their regions plus both last miles. The regions' round
//! trips are medians of the pings between AWS regions as cloudping.co publishes them,
//! rounded to 5 ms (us-east-1, us-west-2, eu-west-1, eu-central-1, ap-south-1,
//! ap-northeast-1). Two nodes of one region are 2 ms apart before their last miles. So a
//! pair is 6 ms to about 260 ms apart, the median near 110 ms.
//!
//! A node's region and last mile follow from its number and the scenario's seed alone,
//! so the model needs no table and every run of a seed draws the same network.

use std::sync::Arc;
use std::time::Duration;

use interlink_node::network::{LinkModel, Links};

/// The regions, with how likely a node is to be in each.
pub const REGIONS: [(&str, f64); 6] = [
    ("us-east", 0.25),
    ("us-west", 0.15),
    ("eu-west", 0.20),
    ("eu-central", 0.15),
    ("ap-south", 0.15),
    ("ap-northeast", 0.10),
];

/// Median round trips between the regions, in ms, in the order of [`REGIONS`].
const BETWEEN: [[u32; 6]; 6] = [
    [2, 65, 70, 90, 190, 150],
    [65, 2, 125, 145, 220, 100],
    [70, 125, 2, 25, 120, 210],
    [90, 145, 25, 2, 110, 225],
    [190, 220, 120, 110, 2, 130],
    [150, 100, 210, 225, 130, 2],
];

/// A node's last mile: a round trip this many ms at least and at most.
const LAST_MILE_MS: [u32; 2] = [2, 20];

/// The model of a scenario with seed `seed`.
pub fn model(seed: u64) -> LinkModel {
    Arc::new(move |a, b| rtt(seed, a, b))
}

/// Node `node`'s side of the links of a scenario with seed `seed`.
pub fn links(seed: u64, node: u64) -> Links {
    Links {
        node,
        model: model(seed),
    }
}

/// The round trip between nodes `a` and `b`.
pub fn rtt(seed: u64, a: u64, b: u64) -> Duration {
    let (region_a, mile_a) = place(seed, a);
    let (region_b, mile_b) = place(seed, b);
    Duration::from_millis(u64::from(BETWEEN[region_a][region_b] + mile_a + mile_b))
}

/// The median round trip between two nodes of the first `nodes`, from a sample of pairs.
pub fn median_rtt(seed: u64, nodes: u64) -> Duration {
    let nodes = nodes.max(2);
    let mut samples: Vec<Duration> = (0..20_000u64)
        .map(|i| {
            let a = mix(seed ^ i.wrapping_mul(7)) % nodes;
            let b = mix(seed ^ i.wrapping_mul(13) ^ 0x5555) % nodes;
            rtt(seed, a, b)
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// A node's region (an index of [`REGIONS`]) and last mile in ms.
pub fn place(seed: u64, node: u64) -> (usize, u32) {
    let draw = mix(seed ^ mix(node));
    let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
    let mut region = REGIONS.len() - 1;
    let mut cumulative = 0.0;
    for (index, (_, weight)) in REGIONS.iter().enumerate() {
        cumulative += weight;
        if unit < cumulative {
            region = index;
            break;
        }
    }
    let span = u64::from(LAST_MILE_MS[1] - LAST_MILE_MS[0] + 1);
    let mile = LAST_MILE_MS[0] + u32::try_from(mix(draw) % span).unwrap_or(0);
    (region, mile)
}

/// splitmix64's finaliser: a well-spread hash of a number.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_are_symmetric_and_within_the_internets_range() {
        for a in 0..200 {
            for b in 0..50 {
                let rtt = rtt(9, a, b);
                assert_eq!(rtt, super::rtt(9, b, a));
                assert!(
                    (Duration::from_millis(6)..=Duration::from_millis(265)).contains(&rtt),
                    "{a}-{b}: {rtt:?}"
                );
            }
        }
        let median = median_rtt(9, 2000);
        assert!(
            (Duration::from_millis(70)..=Duration::from_millis(160)).contains(&median),
            "{median:?}"
        );
    }

    #[test]
    fn nodes_spread_over_the_regions_by_their_weights() {
        let mut counts = [0usize; 6];
        for node in 0..10_000 {
            counts[place(3, node).0] += 1;
        }
        for (count, (name, weight)) in counts.iter().zip(REGIONS) {
            let share = *count as f64 / 10_000.0;
            assert!((share - weight).abs() < 0.02, "{name}: {share}");
        }
    }
}
