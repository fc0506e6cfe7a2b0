//! Which agent should lead which partition, as plain functions of what the metadata store
//! shows: the live agents and each partition's current lease holder. No clocks, no I/O.
//!
//! The assignment is balanced within one (every agent leads `n / a` or `n / a + 1`
//! partitions) and sticky: a partition stays with its live holder unless balance needs it
//! elsewhere, so an agent joining takes only its share and an agent leaving gives up only
//! its own. Partitions that must move go, among the agents with room, to one leading the
//! fewest partitions of that topic, and among those to the one with the highest rendezvous
//! weight: a topic spreads over the agents, and every agent computes the same answer from the
//! same snapshot.

use std::collections::HashMap;

/// One partition as the lease rounds see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot<'a> {
    pub topic: &'a str,
    pub partition: u32,
    /// The agent holding a live lease on it, if any.
    pub holder: Option<&'a str>,
}

/// The wanted owner of every slot, as an index into `agents` (`None` only when there is no
/// agent). `agents` is taken as a set: order and duplicates do not change the answer.
pub fn assign(agents: &[String], slots: &[Slot<'_>]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..agents.len()).collect();
    order.sort_by(|a, b| agents[*a].cmp(&agents[*b]));
    order.dedup_by(|a, b| agents[*a] == agents[*b]);
    if order.is_empty() {
        return vec![None; slots.len()];
    }
    let a = order.len();
    let n = slots.len();
    let (base, extra) = (n / a, n % a);

    // What each agent holds now, best-weighted first: those are the ones it keeps.
    let mut held: Vec<Vec<usize>> = vec![Vec::new(); a];
    let mut pool: Vec<usize> = Vec::new();
    for (s, slot) in slots.iter().enumerate() {
        let holder = slot
            .holder
            .and_then(|h| order.iter().position(|&i| agents[i] == h));
        match holder {
            Some(k) => held[k].push(s),
            None => pool.push(s),
        }
    }
    for (k, list) in held.iter_mut().enumerate() {
        let agent = &agents[order[k]];
        // Each weight once: a sort by a computed key would hash every comparison.
        let mut keyed: Vec<(std::cmp::Reverse<u64>, usize)> = list
            .iter()
            .map(|&s| {
                let w = weight(agent, slots[s].topic, slots[s].partition);
                (std::cmp::Reverse(w), s)
            })
            .collect();
        keyed.sort_unstable();
        list.clear();
        list.extend(keyed.into_iter().map(|(_, s)| s));
    }

    // The agents that hold the most get the `extra` places of size `base + 1`.
    let mut by_load: Vec<usize> = (0..a).collect();
    by_load.sort_by_key(|&k| (std::cmp::Reverse(held[k].len()), k));
    let mut cap = vec![base; a];
    for &k in by_load.iter().take(extra) {
        cap[k] = base + 1;
    }

    let mut owner: Vec<Option<usize>> = vec![None; n];
    let mut load = vec![0usize; a];
    // Partitions of each topic each agent leads: (topic, agent) -> count.
    let mut per_topic: HashMap<(&str, usize), usize> = HashMap::new();
    for k in 0..a {
        for (i, &s) in held[k].iter().enumerate() {
            if i < cap[k] {
                owner[s] = Some(order[k]);
                load[k] += 1;
                *per_topic.entry((slots[s].topic, k)).or_default() += 1;
            } else {
                pool.push(s);
            }
        }
    }

    // Everything else goes, among the agents with room, to one leading the fewest of the
    // topic's partitions (so a new topic spreads over every agent, as Kafka places
    // replicas), and among those to the one that weighs it highest.
    // Topics take turns in proportion to their size (a topic's partitions are spread evenly
    // through the order), so the last places left, which may not suit a topic, do not all
    // fall to one topic.
    pool.sort_unstable_by_key(|&x| (slots[x].topic, slots[x].partition, x));
    let mut keyed: Vec<(u64, &str, usize)> = Vec::with_capacity(pool.len());
    for run in pool.chunk_by(|x, y| slots[*x].topic == slots[*y].topic) {
        let size = run.len() as u64;
        for (rank, &s) in run.iter().enumerate() {
            keyed.push((rank as u64 * 1_000_000 / size, slots[s].topic, s));
        }
    }
    keyed.sort_unstable();
    let pool = keyed.into_iter().map(|(_, _, s)| s);
    for s in pool {
        let slot = &slots[s];
        let best = (0..a).filter(|&k| load[k] < cap[k]).max_by_key(|&k| {
            (
                std::cmp::Reverse(per_topic.get(&(slot.topic, k)).copied().unwrap_or(0)),
                weight(&agents[order[k]], slot.topic, slot.partition),
                k,
            )
        });
        if let Some(k) = best {
            load[k] += 1;
            *per_topic.entry((slot.topic, k)).or_default() += 1;
            owner[s] = Some(order[k]);
        }
    }
    owner
}

/// What one agent should do after a lease round's snapshot.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Free slots wanted by this agent: take their leases.
    pub acquire: Vec<usize>,
    /// Slots this agent holds that another live agent should lead: flush, then release.
    pub hand_back: Vec<usize>,
    /// Slots another agent holds that would come to this agent if their holder were gone:
    /// when such a lease expires, this agent is the one to take it at once.
    pub successor_of: Vec<usize>,
}

/// The plan for agent `me` (which must be among `agents` to be given anything).
pub fn plan(me: &str, agents: &[String], slots: &[Slot<'_>]) -> Plan {
    let owners = assign(agents, slots);
    let mut out = Plan::default();
    for (s, slot) in slots.iter().enumerate() {
        let wanted = owners[s].map(|k| agents[k].as_str());
        match slot.holder {
            None if wanted == Some(me) => out.acquire.push(s),
            Some(h) if h == me && wanted.is_some_and(|w| w != me) => out.hand_back.push(s),
            _ => {}
        }
    }
    // For each other holder, the assignment without it: its slots that would be ours.
    let mut others: Vec<&str> = slots
        .iter()
        .filter_map(|s| s.holder)
        .filter(|h| *h != me)
        .collect();
    others.sort_unstable();
    others.dedup();
    for gone in others {
        let rest: Vec<String> = agents.iter().filter(|a| *a != gone).cloned().collect();
        let without: Vec<Slot<'_>> = slots
            .iter()
            .map(|s| Slot {
                holder: s.holder.filter(|h| *h != gone),
                ..*s
            })
            .collect();
        let owners = assign(&rest, &without);
        for (s, slot) in slots.iter().enumerate() {
            if slot.holder == Some(gone) && owners[s].is_some_and(|k| rest[k] == me) {
                out.successor_of.push(s);
            }
        }
    }
    out.successor_of.sort_unstable();
    out
}

/// Rendezvous (highest random weight) score of `agent` for a partition.
pub fn weight(agent: &str, topic: &str, partition: u32) -> u64 {
    // FNV-1a over the three fields, then a 64-bit finaliser (splitmix64) to spread it.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in agent
        .as_bytes()
        .iter()
        .chain([0u8].iter())
        .chain(topic.as_bytes())
        .chain([0u8].iter())
        .chain(partition.to_be_bytes().iter())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("agent-{i}")).collect()
    }

    /// Topics with the given partition counts, unheld.
    fn layout(topics: &[u32]) -> Vec<(String, u32)> {
        topics
            .iter()
            .enumerate()
            .flat_map(|(t, &count)| (0..count).map(move |p| (format!("topic-{t}"), p)))
            .collect()
    }

    fn slots<'a>(parts: &'a [(String, u32)], holders: &'a [Option<String>]) -> Vec<Slot<'a>> {
        parts
            .iter()
            .zip(holders)
            .map(|((t, p), h)| Slot {
                topic: t,
                partition: *p,
                holder: h.as_deref(),
            })
            .collect()
    }

    fn owners(
        agents: &[String],
        parts: &[(String, u32)],
        holders: &[Option<String>],
    ) -> Vec<Option<String>> {
        assign(agents, &slots(parts, holders))
            .into_iter()
            .map(|o| o.map(|k| agents[k].clone()))
            .collect()
    }

    fn loads(agents: &[String], owners: &[Option<String>]) -> Vec<usize> {
        let mut m: HashMap<&str, usize> = agents.iter().map(|a| (a.as_str(), 0)).collect();
        for o in owners.iter().flatten() {
            *m.get_mut(o.as_str()).expect("owner is an agent") += 1;
        }
        m.into_values().collect()
    }

    /// Lease rounds as the agents run them, all from one snapshot: release what another
    /// should lead, take what is free and wanted. Returns the holders after `rounds`.
    fn run_rounds(
        agents: &[String],
        parts: &[(String, u32)],
        mut holders: Vec<Option<String>>,
        rounds: usize,
    ) -> Vec<Option<String>> {
        for _ in 0..rounds {
            let want = owners(agents, parts, &holders);
            for (h, w) in holders.iter_mut().zip(&want) {
                match h {
                    Some(cur) if Some(&*cur) != w.as_ref() => *h = None,
                    None => *h = w.clone(),
                    _ => {}
                }
            }
        }
        holders
    }

    fn arb_case() -> impl Strategy<Value = (usize, Vec<u32>, Vec<u8>)> {
        (1usize..8, prop::collection::vec(1u32..24, 1..5)).prop_flat_map(|(a, topics)| {
            let n: u32 = topics.iter().sum();
            (
                Just(a),
                Just(topics),
                prop::collection::vec(0u8..12, n as usize),
            )
        })
    }

    proptest! {
        #[test]
        fn every_partition_has_one_owner_and_loads_are_within_one(
            (a, topics, held) in arb_case()
        ) {
            let agents = names(a);
            let parts = layout(&topics);
            // Holders include agents that are gone (index >= a).
            let holders: Vec<Option<String>> = held
                .iter()
                .map(|&h| (h < 10).then(|| format!("agent-{h}")))
                .collect();
            let o = owners(&agents, &parts, &holders);
            prop_assert!(o.iter().all(|x| x.as_ref().is_some_and(|x| agents.contains(x))));
            let l = loads(&agents, &o);
            prop_assert!(l.iter().max().unwrap() - l.iter().min().unwrap() <= 1, "loads {:?}", l);
            // A live holder keeps what balance allows: only overloaded agents lose any.
            for (i, h) in holders.iter().enumerate() {
                if let Some(h) = h.as_ref().filter(|h| agents.contains(h))
                    && o[i].as_ref() != Some(h) {
                        let kept = o.iter().filter(|x| x.as_ref() == Some(h)).count();
                        let cap = parts.len().div_ceil(a);
                        prop_assert!(kept >= parts.len() / a && kept <= cap);
                    }
            }
        }

        #[test]
        fn rounds_converge_to_a_stable_balanced_assignment((a, topics, held) in arb_case()) {
            let agents = names(a);
            let parts = layout(&topics);
            let holders: Vec<Option<String>> = held
                .iter()
                .map(|&h| (h < 10).then(|| format!("agent-{h}")))
                .collect();
            let settled = run_rounds(&agents, &parts, holders, 3);
            prop_assert_eq!(&owners(&agents, &parts, &settled), &settled);
            prop_assert!(settled.iter().all(Option::is_some));
        }

        #[test]
        fn a_joining_agent_takes_only_its_share((a, topics, _) in arb_case()) {
            let agents = names(a);
            let parts = layout(&topics);
            let before = run_rounds(&agents, &parts, vec![None; parts.len()], 3);
            let mut more = agents.clone();
            more.push("agent-new".into());
            let after = owners(&more, &parts, &before);
            let moved: Vec<usize> = (0..parts.len()).filter(|&i| before[i] != after[i]).collect();
            // Every move goes to the newcomer, and it gets exactly its fair share.
            prop_assert!(moved.iter().all(|&i| after[i].as_deref() == Some("agent-new")));
            let share = after.iter().filter(|o| o.as_deref() == Some("agent-new")).count();
            prop_assert_eq!(moved.len(), share);
            prop_assert!(share == parts.len() / more.len() || share == parts.len().div_ceil(more.len()));
            let l = loads(&more, &after);
            prop_assert!(l.iter().max().unwrap() - l.iter().min().unwrap() <= 1);
        }

        #[test]
        fn a_leaving_agent_moves_only_its_own((a, topics, _) in arb_case(), gone in 0usize..8) {
            prop_assume!(a >= 2 && gone < a);
            let agents = names(a);
            let parts = layout(&topics);
            let before = run_rounds(&agents, &parts, vec![None; parts.len()], 3);
            let rest: Vec<String> = agents.iter().filter(|x| **x != agents[gone]).cloned().collect();
            let after = owners(&rest, &parts, &before);
            for i in 0..parts.len() {
                if before[i].as_ref() != Some(&agents[gone]) {
                    prop_assert_eq!(&before[i], &after[i]);
                }
            }
            let l = loads(&rest, &after);
            prop_assert!(l.iter().max().unwrap() - l.iter().min().unwrap() <= 1);
        }

        #[test]
        fn every_agent_computes_the_same_answer((a, topics, held) in arb_case(), seed in any::<u64>()) {
            let agents = names(a);
            let parts = layout(&topics);
            let holders: Vec<Option<String>> = held
                .iter()
                .map(|&h| (h < 10).then(|| format!("agent-{h}")))
                .collect();
            let mut shuffled = agents.clone();
            shuffled.rotate_left((seed as usize) % a);
            shuffled.push(agents[0].clone());
            prop_assert_eq!(owners(&agents, &parts, &holders), owners(&shuffled, &parts, &holders));
        }
    }

    #[test]
    fn plans_name_what_to_take_give_and_succeed() {
        let agents = names(2);
        let parts = layout(&[4]);
        let all_a0 = vec![Some("agent-0".to_string()); 4];
        let s = slots(&parts, &all_a0);
        let p0 = plan("agent-0", &agents, &s);
        let p1 = plan("agent-1", &agents, &s);
        assert_eq!(p0.hand_back.len(), 2);
        assert!(p0.acquire.is_empty() && p1.acquire.is_empty() && p1.hand_back.is_empty());
        // agent-1 succeeds agent-0 on everything if agent-0 dies.
        assert_eq!(p1.successor_of, vec![0, 1, 2, 3]);
        assert!(p0.successor_of.is_empty());

        let freed: Vec<Option<String>> = (0..4)
            .map(|i| (!p0.hand_back.contains(&i)).then(|| "agent-0".to_string()))
            .collect();
        let p1 = plan("agent-1", &agents, &slots(&parts, &freed));
        assert_eq!(p1.acquire, p0.hand_back);
        assert!(
            plan("stranger", &agents, &slots(&parts, &freed))
                .acquire
                .is_empty()
        );
    }

    /// Partitions placed together (a cluster starting, a dead agent's partitions moving)
    /// spread each topic evenly, not only the total.
    #[test]
    fn topics_spread_over_agents() {
        for a in 2..=5 {
            let agents = names(a);
            let parts = layout(&[6, 6, 6, 3, 3, 9]);
            let o = owners(&agents, &parts, &vec![None; parts.len()]);
            for t in 0..6 {
                let mut per: HashMap<&str, usize> = HashMap::new();
                for (i, (topic, _)) in parts.iter().enumerate() {
                    if *topic == format!("topic-{t}") {
                        *per.entry(o[i].as_deref().unwrap()).or_default() += 1;
                    }
                }
                let count = parts.iter().filter(|p| p.0 == format!("topic-{t}")).count();
                let lo = if per.len() < a.min(count) {
                    0
                } else {
                    *per.values().min().unwrap()
                };
                let hi = *per.values().max().unwrap();
                assert!(hi - lo <= 1, "{a} agents, topic-{t}: {per:?}");
            }
        }
    }

    /// A topic created on a running cluster spreads evenly whatever the rendezvous weights
    /// say (for many names, weights alone put three or more of six on one agent), and the
    /// partitions already led stay where they are.
    #[test]
    fn a_new_topic_spreads_evenly_over_the_agents() {
        let agents: Vec<String> = (0..3).map(|i| format!("agent-{i}")).collect();
        for (existing, new) in [(6, 6), (4, 6), (7, 9), (1, 3)] {
            for name in 0..100 {
                let parts: Vec<(String, u32)> = (0..existing)
                    .map(|p| ("base".to_string(), p))
                    .chain((0..new).map(|p| (format!("new-{name}"), p)))
                    .collect();
                let first = owners(
                    &agents,
                    &parts[..existing as usize],
                    &vec![None; existing as usize],
                );
                let mut held = first.clone();
                held.resize(parts.len(), None);
                let o = owners(&agents, &parts, &held);
                assert_eq!(&o[..existing as usize], &first[..], "sticky");
                let mut per: HashMap<&str, usize> = HashMap::new();
                for owner in &o[existing as usize..] {
                    *per.entry(owner.as_deref().unwrap()).or_default() += 1;
                }
                let (lo, hi) = (per.values().min().unwrap(), per.values().max().unwrap());
                assert!(
                    per.len() == 3 && hi - lo <= 1,
                    "{new} partitions of new-{name} after {existing}: {per:?}"
                );
            }
        }
    }
}
