//! What the integration tests share: the CPUID dumps they run over.
// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod dumps;
