//! The recovery rules, as a pure decision from what the store and the pool say (the execution
//! is `Devices::recover`), so they are unit-tested without a kernel.

use crate::store::{Op, Txn};

/// What a start must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No change was in flight and the pool agrees with the store.
    Agree,
    /// An interrupted create: delete thin device `thin` (if the pool has it) and move the
    /// pool's transaction id on.
    RollBack {
        /// The snapshot it was for (`None`: the base).
        snap: Option<u64>,
        /// The thin id.
        thin: u32,
    },
    /// An interrupted delete: finish it.
    RollForward {
        /// The snapshot it belonged to (`None`: a deferred deletion).
        snap: Option<u64>,
        /// The thin id.
        thin: u32,
    },
}

/// Decides from the transaction in flight (if any), the store's transaction id and the pool's.
/// Refuses (with the reason) when the pool was changed by someone else.
pub fn plan(txn: Option<Txn>, store_tid: u64, pool_tid: u64) -> Result<Plan, String> {
    let Some(txn) = txn else {
        if pool_tid != store_tid {
            return Err(format!(
                "its transaction id is {pool_tid} but strata-devmapper's store expects \
                 {store_tid}: another program changed the pool; restore it or start on an \
                 empty pool"
            ));
        }
        return Ok(Plan::Agree);
    };
    // Before the change the pool had txn.tid; the change moves it to txn.tid + 1.
    if pool_tid != txn.tid && pool_tid != txn.tid + 1 {
        return Err(format!(
            "an interrupted change expected transaction id {} or {}, the pool has {pool_tid}: \
             another program changed the pool",
            txn.tid,
            txn.tid + 1
        ));
    }
    Ok(match txn.op {
        Op::Create { snap, thin, .. } => Plan::RollBack { snap, thin },
        Op::Delete { snap, thin } => Plan::RollForward { snap, thin },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(tid: u64) -> Option<Txn> {
        Some(Txn {
            op: Op::Create {
                snap: Some(7),
                thin: 9,
                origin: Some(1),
            },
            tid,
        })
    }

    #[test]
    fn no_change_in_flight_needs_equal_ids() {
        assert_eq!(plan(None, 4, 4), Ok(Plan::Agree));
        let e = plan(None, 4, 5).unwrap_err();
        assert!(e.contains("another program"), "{e}");
        assert!(plan(None, 4, 3).is_err());
    }

    #[test]
    fn an_interrupted_create_is_rolled_back_before_or_after_the_id_moved() {
        let back = Plan::RollBack {
            snap: Some(7),
            thin: 9,
        };
        assert_eq!(plan(create(4), 4, 4), Ok(back));
        assert_eq!(plan(create(4), 4, 5), Ok(back));
        assert!(plan(create(4), 4, 6).is_err());
        assert!(plan(create(4), 4, 3).is_err());
    }

    #[test]
    fn an_interrupted_delete_is_rolled_forward() {
        let txn = Some(Txn {
            op: Op::Delete {
                snap: None,
                thin: 3,
            },
            tid: 10,
        });
        let fwd = Plan::RollForward {
            snap: None,
            thin: 3,
        };
        assert_eq!(plan(txn, 10, 10), Ok(fwd));
        assert_eq!(plan(txn, 10, 11), Ok(fwd));
        assert!(plan(txn, 10, 12).is_err());
    }
}
