//! x86-64 specifics: memory layout, boot registers, CPUID.

pub mod cpuid;
pub mod layout;
pub mod regs;
