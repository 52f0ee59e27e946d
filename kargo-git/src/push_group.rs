//! Pushes of one branch from one mirror, batched (group commit).
//!
//! Checkouts of one mirror that push to the same branch at the same time join a chain:
//! each rebases its own commits onto the newest commit already waiting (or on the wire),
//! so the chain holds one commit per checkout, in the order they joined. Whoever finds no
//! push on the wire pushes the whole chain at once; everyone whose commit it carried is
//! done when it lands. When the remote refuses a batch (it moved elsewhere), the leader
//! fetches the new tip once, and every checkout of that batch, and of the chain built on
//! it, replays its own commits on that tip and joins again.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use gix::ObjectId;

use crate::GitError;

/// What became of a batch a checkout's commit was part of.
#[derive(Debug, Clone)]
pub(crate) enum BatchOutcome {
    /// The batch is on the remote; `tip` is its newest commit.
    Landed {
        /// The newest commit of the batch.
        tip: ObjectId,
        /// How many checkouts' commits it carried.
        size: usize,
    },
    /// The remote refused the batch (its branch moved); `tip` is the branch's new tip
    /// when the leader could fetch it.
    Refused {
        /// The remote's reason.
        reason: String,
        /// The branch's tip fetched after the refusal.
        tip: Option<ObjectId>,
    },
    /// The push failed; whether anything landed is unknown.
    Failed(GitError),
    /// The commit was built on a batch that did not land: it has to be rebuilt.
    Rebuild {
        /// The branch's tip fetched after the refusal, when known.
        tip: Option<ObjectId>,
    },
}

/// The state of one mirror's pushes to one branch.
#[derive(Debug, Default)]
pub(crate) struct GroupState {
    /// The newest commit of the chain waiting for the next push.
    pub(crate) pending: Option<ObjectId>,
    /// The tickets of the checkouts in `pending`'s chain.
    pub(crate) members: Vec<u64>,
    /// The newest commit of the batch on the wire, if one is.
    pub(crate) in_flight: Option<ObjectId>,
    /// Outcomes of finished batches by member ticket, until the member takes it.
    pub(crate) outcomes: HashMap<u64, BatchOutcome>,
    /// The ticket the next member gets (two checkouts may have the same head).
    next_ticket: u64,
}

impl GroupState {
    /// The commit a joining checkout builds on: the chain waiting, else the batch on
    /// the wire.
    pub(crate) fn chain_tip(&self) -> Option<ObjectId> {
        self.pending.or(self.in_flight)
    }

    /// Adds a checkout's head as the chain's new tip; returns the member's ticket.
    pub(crate) fn join(&mut self, head: ObjectId) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending = Some(head);
        self.members.push(ticket);
        ticket
    }

    /// Takes the waiting chain as the batch to push (`None` when a push is on the wire or
    /// nothing waits).
    pub(crate) fn start_batch(&mut self) -> Option<(ObjectId, Vec<u64>)> {
        if self.in_flight.is_some() {
            return None;
        }
        let tip = self.pending.take()?;
        self.in_flight = Some(tip);
        Some((tip, std::mem::take(&mut self.members)))
    }

    /// Records how the batch on the wire ended. When it did not land, the chain built on
    /// it is dropped too: its members rebuild.
    pub(crate) fn finish_batch(&mut self, members: Vec<u64>, outcome: &BatchOutcome) {
        self.in_flight = None;
        let tip = match outcome {
            BatchOutcome::Landed { .. } => None,
            BatchOutcome::Refused { tip, .. } => Some(*tip),
            BatchOutcome::Failed(_) => Some(None),
            BatchOutcome::Rebuild { tip } => Some(*tip),
        };
        if let Some(tip) = tip {
            self.pending = None;
            for m in std::mem::take(&mut self.members) {
                self.outcomes.insert(m, BatchOutcome::Rebuild { tip });
            }
        }
        for m in members {
            self.outcomes.insert(m, outcome.clone());
        }
    }
}

/// One mirror's pushes to one branch: the chain and the turn to push.
#[derive(Debug, Default)]
pub(crate) struct PushGroup {
    state: Mutex<GroupState>,
    changed: Condvar,
}

impl PushGroup {
    /// The state, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits (at most `limit`) for a batch to end, releasing the lock meanwhile.
    pub(crate) fn wait<'a>(
        &self,
        guard: MutexGuard<'a, GroupState>,
        limit: Duration,
    ) -> MutexGuard<'a, GroupState> {
        match self.changed.wait_timeout(guard, limit) {
            Ok((g, _)) => g,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    /// Wakes every waiting member.
    pub(crate) fn notify(&self) {
        self.changed.notify_all();
    }
}

/// The push groups of this process, by mirror directory and branch.
type Groups = Mutex<HashMap<(std::path::PathBuf, String), Arc<PushGroup>>>;

/// The push group of `mirror_path`'s `branch` in this process.
pub(crate) fn push_group(mirror_path: &std::path::Path, branch: &str) -> Arc<PushGroup> {
    static GROUPS: OnceLock<Groups> = OnceLock::new();
    let mut map = GROUPS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry((mirror_path.to_path_buf(), branch.to_owned()))
        .or_default()
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes_or_panic(&[n; 20])
    }

    #[test]
    fn a_chain_built_on_a_refused_batch_is_rebuilt() {
        let mut s = GroupState::default();
        let first = s.join(id(1));
        let (tip, members) = s.start_batch().expect("a batch");
        assert_eq!((tip, members.clone()), (id(1), vec![first]));
        assert!(s.start_batch().is_none(), "one batch on the wire at a time");
        assert_eq!(s.chain_tip(), Some(id(1)));
        let later = [s.join(id(2)), s.join(id(3))];
        s.finish_batch(
            members,
            &BatchOutcome::Refused {
                reason: "moved".into(),
                tip: Some(id(9)),
            },
        );
        assert!(matches!(
            s.outcomes.get(&first),
            Some(BatchOutcome::Refused { .. })
        ));
        for m in later {
            assert!(matches!(
                s.outcomes.get(&m),
                Some(BatchOutcome::Rebuild { tip: Some(t) }) if *t == id(9)
            ));
        }
        assert_eq!(s.chain_tip(), None);
    }

    #[test]
    fn a_landed_batch_leaves_the_chain_behind_it_waiting() {
        let mut s = GroupState::default();
        let first = s.join(id(1));
        let (_, members) = s.start_batch().expect("a batch");
        let second = s.join(id(2));
        s.finish_batch(
            members,
            &BatchOutcome::Landed {
                tip: id(1),
                size: 1,
            },
        );
        assert!(matches!(
            s.outcomes.get(&first),
            Some(BatchOutcome::Landed { .. })
        ));
        assert_eq!(s.start_batch(), Some((id(2), vec![second])));
    }

    #[test]
    fn members_with_the_same_head_each_get_the_outcome() {
        // Two checkouts with nothing of their own to push both stand on the chain's tip.
        let mut s = GroupState::default();
        let a = s.join(id(1));
        let b = s.join(id(1));
        assert_ne!(a, b);
        let (_, members) = s.start_batch().expect("a batch");
        s.finish_batch(
            members,
            &BatchOutcome::Landed {
                tip: id(1),
                size: 2,
            },
        );
        assert!(s.outcomes.remove(&a).is_some());
        assert!(s.outcomes.remove(&b).is_some());
    }
}
