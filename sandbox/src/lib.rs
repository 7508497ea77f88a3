//! Placeholder until the sandbox runtime lands; see issue "sandbox runtime".
#![forbid(unsafe_code)]
pub use fetch;
