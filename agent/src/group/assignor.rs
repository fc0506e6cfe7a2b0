//! Consumer-group assignors: which member of a group should own which partition, as plain
//! functions of the members (their subscriptions and what they own now) and the topics'
//! partition counts. No clocks, no I/O; every agent computes the same answer.
//!
//! - `round-robin` (the default): partitions sorted by (topic, partition) and members sorted
//!   by id; each partition is dealt to the next member in turn that subscribes to its topic.
//! - `range`: per topic, the members subscribed to it (sorted) get contiguous ranges, the
//!   first `n % m` one partition more (Kafka's RangeAssignor).
//! - `sticky`: balanced within one among the members that can take a partition, keeping as
//!   many current owners as balance allows, so a rebalance moves only what it must.

use std::collections::{BTreeMap, BTreeSet};

/// A topic partition.
pub type Tp = (String, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Assignor {
    RoundRobin,
    Range,
    Sticky,
}

impl Assignor {
    pub const ALL: [Assignor; 3] = [Assignor::RoundRobin, Assignor::Range, Assignor::Sticky];

    pub fn name(self) -> &'static str {
        match self {
            Assignor::RoundRobin => "round-robin",
            Assignor::Range => "range",
            Assignor::Sticky => "sticky",
        }
    }

    pub fn parse(name: &str) -> Option<Assignor> {
        Assignor::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// The assignor a group uses: the first of the first member's preferences that every member
/// supports (members list theirs in order of preference), or `None` if they share none.
pub fn choose(preferences: &[Vec<Assignor>]) -> Option<Assignor> {
    let first = preferences.first()?;
    first
        .iter()
        .copied()
        .find(|a| preferences.iter().all(|p| p.contains(a)))
}

/// One member as an assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Topics it subscribes to.
    pub topics: BTreeSet<String>,
    /// What it owns (or was last assigned) now; only `sticky` looks at it.
    pub current: Vec<Tp>,
}

/// Every partition of every topic some member subscribes to, given to exactly one member
/// subscribed to its topic. `partitions` maps each existing topic to its partition count;
/// subscribed topics that do not exist are ignored. Every member has an entry.
pub fn assign(
    kind: Assignor,
    members: &[Member],
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, Vec<Tp>> {
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    sorted.dedup_by(|a, b| a.id == b.id);
    let mut out: BTreeMap<String, Vec<Tp>> =
        sorted.iter().map(|m| (m.id.clone(), Vec::new())).collect();
    let wanted: Vec<Tp> = partitions
        .iter()
        .filter(|(t, _)| sorted.iter().any(|m| m.topics.contains(*t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| (t.clone(), p)))
        .collect();
    match kind {
        Assignor::RoundRobin => {
            let mut next = 0usize;
            for tp in wanted {
                let m = sorted.len();
                if let Some(k) = (0..m)
                    .map(|i| (next + i) % m)
                    .find(|&k| sorted[k].topics.contains(&tp.0))
                {
                    out.entry(sorted[k].id.clone()).or_default().push(tp);
                    next = k + 1;
                }
            }
        }
        Assignor::Range => {
            for (topic, &n) in partitions {
                let subs: Vec<&&Member> =
                    sorted.iter().filter(|m| m.topics.contains(topic)).collect();
                if subs.is_empty() {
                    continue;
                }
                let (base, extra) = (n as usize / subs.len(), n as usize % subs.len());
                let mut p = 0u32;
                for (i, m) in subs.iter().enumerate() {
                    let take = base + usize::from(i < extra);
                    for _ in 0..take {
                        out.entry(m.id.clone())
                            .or_default()
                            .push((topic.clone(), p));
                        p += 1;
                    }
                }
            }
        }
        Assignor::Sticky => sticky(&sorted, wanted, &mut out),
    }
    out
}

/// Caps every member at its fair share of what it can take (members holding most get the
/// `+1` places), keeps current owners up to their caps, then gives each remaining partition
/// to the least loaded member that subscribes to it.
fn sticky(sorted: &[&Member], wanted: Vec<Tp>, out: &mut BTreeMap<String, Vec<Tp>>) {
    let m = sorted.len();
    if m == 0 {
        return;
    }
    let wanted_set: BTreeSet<&Tp> = wanted.iter().collect();
    // Current owners, first claim wins (a partition two members claim stays with the first).
    let mut claimed: BTreeSet<Tp> = BTreeSet::new();
    let mut held: Vec<Vec<Tp>> = vec![Vec::new(); m];
    for (k, member) in sorted.iter().enumerate() {
        let mut mine: Vec<Tp> = member
            .current
            .iter()
            .filter(|tp| wanted_set.contains(tp) && member.topics.contains(&tp.0))
            .cloned()
            .collect();
        mine.sort();
        mine.dedup();
        for tp in mine {
            if claimed.insert(tp.clone()) {
                held[k].push(tp);
            }
        }
    }
    let n = wanted.len();
    let (base, extra) = (n / m, n % m);
    let mut by_held: Vec<usize> = (0..m).collect();
    by_held.sort_by_key(|&k| (std::cmp::Reverse(held[k].len()), k));
    let mut cap = vec![base; m];
    for &k in by_held.iter().take(extra) {
        cap[k] = base + 1;
    }
    let mut load = vec![0usize; m];
    let mut free: Vec<Tp> = wanted
        .iter()
        .filter(|tp| !claimed.contains(*tp))
        .cloned()
        .collect();
    for k in 0..m {
        for (i, tp) in held[k].iter().enumerate() {
            if i < cap[k] {
                out.entry(sorted[k].id.clone())
                    .or_default()
                    .push(tp.clone());
                load[k] += 1;
            } else {
                free.push(tp.clone());
            }
        }
    }
    free.sort();
    for tp in free {
        // Members with room first, then (when subscriptions differ and a topic's only
        // subscribers are full) anyone subscribed: every partition gets an owner.
        let pick = (0..m)
            .filter(|&k| sorted[k].topics.contains(&tp.0))
            .min_by_key(|&k| (load[k] >= cap[k], load[k], k));
        if let Some(k) = pick {
            load[k] += 1;
            out.entry(sorted[k].id.clone()).or_default().push(tp);
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(id: usize, topics: &[&str], current: Vec<Tp>) -> Member {
        Member {
            id: format!("m{id:02}"),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            current,
        }
    }

    fn topics(counts: &[u32]) -> BTreeMap<String, u32> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &n)| (format!("t{i}"), n))
            .collect()
    }

    fn owners(a: &BTreeMap<String, Vec<Tp>>) -> BTreeMap<Tp, Vec<String>> {
        let mut o: BTreeMap<Tp, Vec<String>> = BTreeMap::new();
        for (m, tps) in a {
            for tp in tps {
                o.entry(tp.clone()).or_default().push(m.clone());
            }
        }
        o
    }

    fn spread(a: &BTreeMap<String, Vec<Tp>>) -> usize {
        let max = a.values().map(Vec::len).max().unwrap_or(0);
        let min = a.values().map(Vec::len).min().unwrap_or(0);
        max - min
    }

    #[test]
    fn round_robin_deals_in_turn() {
        let members = [member(0, &["t0"], vec![]), member(1, &["t0"], vec![])];
        let a = assign(Assignor::RoundRobin, &members, &topics(&[4]));
        assert_eq!(a["m00"], vec![("t0".to_string(), 0), ("t0".to_string(), 2)]);
        assert_eq!(a["m01"], vec![("t0".to_string(), 1), ("t0".to_string(), 3)]);
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let members = [
            member(0, &["t0", "t1"], vec![]),
            member(1, &["t0", "t1"], vec![]),
        ];
        let a = assign(Assignor::Range, &members, &topics(&[3, 2]));
        let t = |t: &str, p| (t.to_string(), p);
        assert_eq!(a["m00"], vec![t("t0", 0), t("t0", 1), t("t1", 0)]);
        assert_eq!(a["m01"], vec![t("t0", 2), t("t1", 1)]);
    }

    #[test]
    fn sticky_keeps_owners_when_a_member_joins() {
        let t = |p| ("t0".to_string(), p);
        let members = [
            member(0, &["t0"], vec![t(0), t(1)]),
            member(1, &["t0"], vec![t(2), t(3)]),
            member(2, &["t0"], vec![]),
        ];
        let a = assign(Assignor::Sticky, &members, &topics(&[4]));
        assert_eq!(spread(&a), 1);
        // One partition moves to the newcomer; the rest stay.
        let kept = a["m00"]
            .iter()
            .filter(|tp| [t(0), t(1)].contains(tp))
            .count()
            + a["m01"]
                .iter()
                .filter(|tp| [t(2), t(3)].contains(tp))
                .count();
        assert_eq!(kept, 3);
        assert_eq!(a["m02"].len(), 1);
    }

    #[test]
    fn the_group_uses_an_assignor_every_member_supports() {
        use Assignor::*;
        assert_eq!(
            choose(&[vec![Sticky, RoundRobin], vec![RoundRobin, Sticky]]),
            Some(Sticky)
        );
        assert_eq!(choose(&[vec![Sticky, Range], vec![Range]]), Some(Range));
        assert_eq!(choose(&[vec![Sticky], vec![Range]]), None);
        assert_eq!(choose(&[]), None);
        assert_eq!(Assignor::parse("round-robin"), Some(RoundRobin));
        assert_eq!(Assignor::parse("nope"), None);
    }

    fn arb_case() -> impl Strategy<Value = (Vec<u32>, usize, Vec<u8>, Vec<u8>)> {
        (
            prop::collection::vec(0u32..12, 1..4),
            1usize..7,
            prop::collection::vec(any::<u8>(), 7),
            prop::collection::vec(any::<u8>(), 64),
        )
    }

    /// Members each subscribing to a random non-empty subset of the topics (bits of `subs`),
    /// owning random partitions now (`held`).
    fn build(counts: &[u32], m: usize, subs: &[u8], held: &[u8], same: bool) -> Vec<Member> {
        let all: Vec<String> = (0..counts.len()).map(|i| format!("t{i}")).collect();
        let parts: Vec<Tp> = counts
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| (0..n).map(move |p| (format!("t{i}"), p)))
            .collect();
        (0..m)
            .map(|k| {
                let mut topics: BTreeSet<String> = all
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| same || subs[k] & (1 << i) != 0)
                    .map(|(_, t)| t.clone())
                    .collect();
                if topics.is_empty() {
                    topics.insert(all[0].clone());
                }
                let current = parts
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| held.get(*i).is_some_and(|h| (*h as usize) % (m + 1) == k))
                    .map(|(_, tp)| tp.clone())
                    .collect();
                Member {
                    id: format!("m{k:02}"),
                    topics,
                    current,
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn every_partition_goes_to_exactly_one_subscriber(
            (counts, m, subs, held) in arb_case(),
            kind in prop::sample::select(Assignor::ALL.to_vec()),
        ) {
            let members = build(&counts, m, &subs, &held, false);
            let parts = topics(&counts);
            let a = assign(kind, &members, &parts);
            prop_assert_eq!(a.len(), m);
            let o = owners(&a);
            for (t, &n) in &parts {
                let subscribed = members.iter().any(|mm| mm.topics.contains(t));
                for p in 0..n {
                    let got = o.get(&(t.clone(), p));
                    if subscribed {
                        let got = got.expect("assigned");
                        prop_assert_eq!(got.len(), 1);
                        let owner = members.iter().find(|mm| mm.id == got[0]).expect("member");
                        prop_assert!(owner.topics.contains(t));
                    } else {
                        prop_assert!(got.is_none());
                    }
                }
            }
        }

        #[test]
        fn same_subscriptions_balance_within_one(
            (counts, m, subs, held) in arb_case(),
        ) {
            let members = build(&counts, m, &subs, &held, true);
            let parts = topics(&counts);
            prop_assert!(spread(&assign(Assignor::RoundRobin, &members, &parts)) <= 1);
            prop_assert!(spread(&assign(Assignor::Sticky, &members, &parts)) <= 1);
            // Range balances each topic within one (Kafka's range is not balanced across
            // topics: the first members get the extra partition of every topic).
            let a = assign(Assignor::Range, &members, &parts);
            for t in parts.keys() {
                let per: Vec<usize> = a.values().map(|v| v.iter().filter(|tp| &tp.0 == t).count()).collect();
                prop_assert!(per.iter().max().unwrap_or(&0) - per.iter().min().unwrap_or(&0) <= 1);
            }
        }

        /// Sticky moves only what balance needs: a partition changes owner only if it had
        /// none, its owner is over its cap, or its owner claimed it second.
        #[test]
        fn sticky_moves_only_what_balance_needs((counts, m, subs, held) in arb_case()) {
            let members = build(&counts, m, &subs, &held, true);
            let parts = topics(&counts);
            let a = assign(Assignor::Sticky, &members, &parts);
            let n: usize = parts.values().map(|&c| c as usize).sum();
            let (base, extra) = (n / m, n % m);
            let mut held_counts: Vec<usize> = members.iter().map(|mm| mm.current.len()).collect();
            held_counts.sort_unstable_by(|x, y| y.cmp(x));
            // The most any assignment can keep: each member keeps up to its cap, the
            // `extra` largest holders having the larger caps.
            let keepable: usize = held_counts
                .iter()
                .enumerate()
                .map(|(i, &h)| h.min(base + usize::from(i < extra)))
                .sum();
            let kept: usize = members
                .iter()
                .map(|mm| mm.current.iter().filter(|tp| a[&mm.id].contains(tp)).count())
                .sum();
            prop_assert_eq!(kept, keepable);
        }
    }
}
