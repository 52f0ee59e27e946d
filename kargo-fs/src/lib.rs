//! File-system operations that never follow symbolic links, shared by `kargo-git` (writing
//! and clearing work trees) and `kargo-steps` (the file steps).
//!
//! A path checked once (by a sandbox, or because the work tree's root was created by us)
//! and used later as a string would follow whatever is on disk by then: a directory swapped
//! for a link to `/etc` between the check and the write redirects the write. The helpers of
//! [`nofollow`] instead open every directory component with `O_NOFOLLOW`, starting at `/`
//! (or the current directory for a relative path), and then create, rename and remove
//! entries relative to the final directory's handle. A component that has become a
//! symbolic link (or a file) makes the operation fail with an error naming it.
//!
//! This crate depends on no other kargo crate, so `kargo-git` (which depends on none) can
//! use it too. Only Unix has these operations; on other systems the callers use `std::fs`.

#[cfg(unix)]
pub mod nofollow;
