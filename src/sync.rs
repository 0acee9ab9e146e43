//! The one place the crate imports its locks from (parking_lot: no
//! poisoning, so a panicking request cannot leave a lock unusable).

pub(crate) use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
