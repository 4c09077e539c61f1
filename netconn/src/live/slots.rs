//! Which namespaces get the kernel's per-namespace counting slots when
//! there are more namespaces than slots (`watch --all-namespaces`).
//!
//! Any user can make network namespaces (inside a user namespace of their
//! own, `unshare -Urn`), hundreds a second: first come, first served would
//! let them take every slot and hide the namespaces that root, the
//! container runtime or the kubelet make afterwards. So namespaces owned
//! by the host's user namespace (the system's, its containers', its pods')
//! come first: one of them takes the slot of a namespace of an
//! unprivileged user namespace when none is free. Those left out are
//! tried again at every interval, and take the next free slot.

/// A namespace asking for a slot, or holding one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub inode: u32,
    /// Owned by the host's user namespace.
    pub host_users: bool,
}

/// What to do with the slots.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Candidates to give a slot to, host users' first.
    pub adopt: Vec<u32>,
    /// Slots to take back first (their namespaces become untracked).
    pub evict: Vec<u32>,
}

/// With `slots` in all, `held` holding some, which of `candidates` get one.
pub fn plan(slots: usize, held: &[Claim], candidates: &[Claim]) -> Plan {
    let mut free = slots.saturating_sub(held.len());
    // Slots that a host users' namespace may take, latest inodes first.
    let mut yielding: Vec<u32> = held
        .iter()
        .filter(|c| !c.host_users)
        .map(|c| c.inode)
        .collect();
    let mut ordered = candidates.to_vec();
    ordered.sort_by_key(|c| (!c.host_users, c.inode));
    let mut plan = Plan::default();
    for c in ordered {
        if free > 0 {
            free -= 1;
        } else if c.host_users
            && let Some(inode) = yielding.pop()
        {
            plan.evict.push(inode);
        } else {
            continue;
        }
        plan.adopt.push(c.inode);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(list: &[(u32, bool)]) -> Vec<Claim> {
        list.iter()
            .map(|&(inode, host_users)| Claim { inode, host_users })
            .collect()
    }

    #[test]
    fn free_slots_go_to_host_users_first() {
        let p = plan(2, &[], &claims(&[(5, false), (6, true), (7, false)]));
        assert_eq!(
            p,
            Plan {
                adopt: vec![6, 5],
                evict: vec![]
            }
        );
        let p = plan(10, &claims(&[(1, true)]), &claims(&[(5, false), (6, true)]));
        assert_eq!(p.adopt, vec![6, 5]);
    }

    #[test]
    fn a_host_users_namespace_takes_an_unprivileged_ones_slot() {
        let held = claims(&[(1, true), (2, false), (3, false)]);
        let p = plan(3, &held, &claims(&[(9, true), (8, true), (7, false)]));
        assert_eq!(
            p,
            Plan {
                adopt: vec![8, 9],
                evict: vec![3, 2]
            }
        );
        // No more unprivileged slots to take: the rest waits.
        let held = claims(&[(1, true), (2, true)]);
        let p = plan(2, &held, &claims(&[(9, true), (7, false)]));
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn unprivileged_namespaces_never_take_a_held_slot() {
        let held = claims(&[(1, false)]);
        assert_eq!(plan(1, &held, &claims(&[(2, false)])), Plan::default());
        // Fewer slots than held (the bound lowered): nothing is adopted.
        assert_eq!(
            plan(1, &claims(&[(1, true), (2, true)]), &claims(&[(3, true)])),
            Plan::default()
        );
    }
}
