//! scratchfs: an in-memory filesystem with a hard quota.
pub mod engine;
pub mod storage;
mod sync;

pub use engine::path::ScratchFs;
pub use engine::*;
pub use storage::{Seek, Shape};
