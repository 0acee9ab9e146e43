//! Mount helpers (filled in with the FUSE adapter).
