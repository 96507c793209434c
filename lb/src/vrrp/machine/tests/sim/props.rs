//! The random scenarios (proptest) over the simulator of [`super`], whose doc
//! comment states the properties checked.
//!
//! Generators: 2 or 3 nodes (separate properties); v3 at 100 ms, 300 ms or
//! 1 s, or v2 at 1 s; priorities from 1..=255 or, half of the time, from
//! {100, 150, 254, 255} so ties and owners are common; preempt on or off
//! 50/50 per node (owners always preempt); preempt_delay 0–2 intervals; 80 % ready from start; start offsets
//! 0–500 ms (so the start order is random too); link delay per delivery
//! uniform in 0..=delay_max, delay_max 0–2 ms; loss 0 half of the runs,
//! else 0–20 % per copy; up to 10 ops (start, stop, kill, priority change,
//! link down/up, ready) at gaps of 0–8 intervals, on any node: a kill or
//! stop followed by a start is a restart.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn arb_scenario(n: usize) -> impl Strategy<Value = Scenario> {
    let timing = prop_oneof![
        Just((Version::V3, 10u16)),
        Just((Version::V3, 30)),
        Just((Version::V3, 100)),
        Just((Version::V2, 100)),
    ];
    // Priorities from a small set half of the time, so ties and owners are common.
    let prio = || prop_oneof![1u8..=255, Just(100u8), Just(150), Just(254), Just(255)];
    let node = (
        prio(),
        prop::bool::weighted(0.5),
        0u64..3,
        prop::bool::weighted(0.8),
    );
    let op = prop_oneof![
        2 => Just(Op::Start),
        1 => Just(Op::Stop),
        1 => Just(Op::Kill),
        1 => prio().prop_map(Op::Prio),
        1 => Just(Op::LinkDown),
        1 => Just(Op::LinkUp),
        1 => Just(Op::Ready),
    ];
    let loss = prop_oneof![Just(0u32), 0u32..=200];
    (
        timing,
        (0u64..=2000, loss, any::<u64>()),
        prop::collection::vec(node, n),
        prop::collection::vec(0u64..=500, n),
        prop::collection::vec((0u64..8000, 0..n, op), 0..10),
    )
        .prop_map(
            move |((version, centis), (delay_us, loss_permille, seed), nodes, start, ops)| {
                let interval = AdvertInterval::from_centis(centis).unwrap();
                let iv = interval.as_duration();
                let mk =
                    |i: usize, (prio, preempt, delay_k, ready): (u8, bool, u64, bool)| Params {
                        vrid: Vrid::new(51).unwrap(),
                        version,
                        priority: Priority(prio),
                        advert_interval: interval,
                        preempt,
                        preempt_delay: iv * delay_k as u32,
                        primary_ip: IPS[i],
                        ready,
                    };
                // Gaps are in thousandths of an interval.
                let frac = |k: u64| iv * k as u32 / 1000;
                Scenario {
                    version,
                    interval,
                    delay_max: Duration::from_micros(delay_us),
                    loss_permille,
                    seed,
                    wire: Wire::Honest,
                    nodes: nodes
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| mk(i, p))
                        .collect(),
                    start_at: start.into_iter().map(Duration::from_millis).collect(),
                    ops: ops.into_iter().map(|(g, n, op)| (frac(g), n, op)).collect(),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("TANDEM_SIM_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(6000)))]

    #[test]
    fn two_nodes_converge_to_one_master(s in arb_scenario(2)) {
        if let Err(e) = run(&s) {
            prop_assert!(false, "{e}\n{s:#?}");
        }
    }

    #[test]
    fn three_nodes_converge_to_one_master(s in arb_scenario(3)) {
        if let Err(e) = run(&s) {
            prop_assert!(false, "{e}\n{s:#?}");
        }
    }
}
