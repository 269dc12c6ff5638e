#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod abi;
pub mod cpuid;
#[cfg(feature = "dumps")]
pub mod dump;
pub mod feature;
pub mod featureset;
pub mod hardware;
pub mod host;
pub mod levelling;
pub mod msr;
pub(crate) mod nospec;
pub mod policy;
#[cfg(feature = "silicon-model")]
pub mod silicon;

pub use cpuid::{CpuidRegs, CpuidSource, Vendor};
pub use feature::Feature;
pub use featureset::Featureset;
pub use policy::CpuPolicy;
