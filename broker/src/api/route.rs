//! Whether this broker answers for a partition: it must own it in the current
//! [`Topology`] and hold its etcd lease; a client that sent a leader epoch must
//! have this owner's. The one place the data APIs (Produce, Fetch, ListOffsets,
//! OffsetForLeaderEpoch, DeleteRecords) decide "not here".

use crate::cluster::Topology;
use crate::errors::{of, Error};

/// `Ok(leader epoch)` when this broker leads the partition for a request that
/// carries `client_epoch` (-1: none); otherwise the Kafka error code to answer:
/// NOT_LEADER_OR_FOLLOWER (another owner, none yet, or this broker without its
/// lease), FENCED_LEADER_EPOCH (the client's epoch is older) or UNKNOWN_LEADER_EPOCH
/// (newer than this broker knows).
pub(crate) fn lead(view: &Topology, topic: &str, partition: i32, client_epoch: i32) -> Result<i32, i16> {
    let Some(owner) = view.owner(topic, partition) else {
        return Err(of(Error::NotLeaderOrFollower));
    };
    if owner.broker != view.this || !view.live {
        return Err(of(Error::NotLeaderOrFollower));
    }
    if client_epoch >= 0 && client_epoch < owner.epoch {
        return Err(of(Error::FencedLeaderEpoch));
    }
    if client_epoch > owner.epoch {
        return Err(of(Error::UnknownLeaderEpoch));
    }
    if !view.taken_over(topic, partition, owner.epoch) {
        // Still being rebuilt from the object store: a moment.
        return Err(of(Error::NotLeaderOrFollower));
    }
    Ok(owner.epoch)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::Owner;

    #[test]
    fn only_the_live_owner_leads_and_epochs_are_checked() {
        let mut view = Topology { this: 1, live: true, lease: 9, ..Default::default() };
        view.assignments.insert(
            "t".into(),
            Arc::new(vec![Some(Owner { broker: 1, epoch: 3 }), Some(Owner { broker: 2, epoch: 0 })]),
        );
        assert_eq!(lead(&view, "t", 0, -1), Err(of(Error::NotLeaderOrFollower)), "not taken over yet");
        view.ready.insert(("t".into(), 0), (3, 9));
        assert_eq!(lead(&view, "t", 0, -1), Ok(3));
        assert_eq!(lead(&view, "t", 0, 3), Ok(3));
        assert_eq!(lead(&view, "t", 0, 2), Err(of(Error::FencedLeaderEpoch)));
        assert_eq!(lead(&view, "t", 0, 4), Err(of(Error::UnknownLeaderEpoch)));
        assert_eq!(lead(&view, "t", 1, -1), Err(of(Error::NotLeaderOrFollower)));
        assert_eq!(lead(&view, "t", 2, -1), Err(of(Error::NotLeaderOrFollower)));
        view.live = false;
        assert_eq!(lead(&view, "t", 0, -1), Err(of(Error::NotLeaderOrFollower)));
    }
}
