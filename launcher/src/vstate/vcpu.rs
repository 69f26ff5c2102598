//! One vCPU: its boot state and its run loop, which forwards device exits and turns every way
//! a vCPU can stop into an [`Outcome`], never a panic.

use std::sync::atomic::{AtomicBool, Ordering};

use kvm_bindings::{CpuId, Msrs, kvm_lapic_state};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::GuestMemoryMmap;

use super::vm::Vm;
use crate::Error;
use crate::arch::{cpuid, regs};
use crate::boot::BootEntry;
use crate::devices::{Devices, IoAction};

/// `KVM_SYSTEM_EVENT_SHUTDOWN`, `_RESET` and `_CRASH`.
const SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const SYSTEM_EVENT_RESET: u32 = 2;

/// Local APIC LVT0 and LVT1 register offsets and delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// How a vCPU's run loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest powered off.
    PowerOff,
    /// The guest asked for a reset.
    Reset,
    /// The VMM asked this vCPU to stop.
    Stopped,
    /// Something went wrong: what, with the vCPU's registers.
    Failed {
        /// What happened.
        reason: String,
        /// The registers at that moment, formatted.
        registers: String,
    },
}

/// A configured vCPU.
pub struct Vcpu {
    fd: VcpuFd,
    index: u8,
}

impl Vcpu {
    /// Creates vCPU `index` and sets its CPUID, MSRs, FPU and local APIC; the boot vCPU (with
    /// `boot`) also gets the entry registers. The others wait for INIT/SIPI from the guest.
    pub fn new(
        vm: &Vm,
        index: u8,
        count: u8,
        supported_cpuid: &CpuId,
        mem: &GuestMemoryMmap,
        boot: Option<BootEntry>,
    ) -> Result<Self, Error> {
        let fd = vm
            .fd()
            .create_vcpu(u64::from(index))
            .map_err(|e| Error::kvm("KVM_CREATE_VCPU", e))?;

        let mut cpuid = supported_cpuid.clone();
        cpuid::filter(cpuid.as_mut_slice(), index, count);
        fd.set_cpuid2(&cpuid)
            .map_err(|e| Error::kvm("KVM_SET_CPUID2", e))?;

        let entries = regs::boot_msrs();
        let msrs =
            Msrs::from_entries(&entries).map_err(|_| Error::BootSetup("too many boot MSRs"))?;
        let written = fd
            .set_msrs(&msrs)
            .map_err(|e| Error::kvm("KVM_SET_MSRS", e))?;
        if written != entries.len() {
            let index = entries.get(written).map_or(0, |e| e.index);
            return Err(Error::BootSetup(refused_msr_message(index)));
        }
        fd.set_fpu(&regs::boot_fpu())
            .map_err(|e| Error::kvm("KVM_SET_FPU", e))?;

        let mut lapic = fd.get_lapic().map_err(|e| Error::kvm("KVM_GET_LAPIC", e))?;
        set_lint_modes(&mut lapic);
        fd.set_lapic(&lapic)
            .map_err(|e| Error::kvm("KVM_SET_LAPIC", e))?;

        if let Some(boot) = boot {
            let sregs = fd.get_sregs().map_err(|e| Error::kvm("KVM_GET_SREGS", e))?;
            let sregs = regs::boot_sregs(mem, boot.protocol, sregs)?;
            fd.set_sregs(&sregs)
                .map_err(|e| Error::kvm("KVM_SET_SREGS", e))?;
            fd.set_regs(&regs::boot_regs(boot.protocol, boot.entry))
                .map_err(|e| Error::kvm("KVM_SET_REGS", e))?;
        }
        Ok(Self { fd, index })
    }

    /// This vCPU's index (and APIC id).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Runs the guest until it powers off, resets, fails, or `stop` is set (the caller then
    /// interrupts `KVM_RUN` with a signal).
    pub fn run(&mut self, devices: &Devices, stop: &AtomicBool) -> Outcome {
        loop {
            if stop.load(Ordering::Acquire) {
                return Outcome::Stopped;
            }
            let exit = match self.fd.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                    continue;
                }
                Err(e) => return self.failed(format!("KVM_RUN failed: {e}")),
            };
            match exit {
                VcpuExit::IoIn(port, data) => devices.pio_read(port, data),
                VcpuExit::IoOut(port, data) => match devices.pio_write(port, data) {
                    IoAction::Continue => {}
                    IoAction::PowerOff => return Outcome::PowerOff,
                    IoAction::Reset => return Outcome::Reset,
                },
                VcpuExit::MmioRead(addr, data) => devices.mmio_read(addr, data),
                VcpuExit::MmioWrite(addr, data) => devices.mmio_write(addr, data),
                VcpuExit::SystemEvent(SYSTEM_EVENT_SHUTDOWN, _) => return Outcome::PowerOff,
                VcpuExit::SystemEvent(SYSTEM_EVENT_RESET, _) => return Outcome::Reset,
                VcpuExit::SystemEvent(kind, _) => {
                    return self.failed(format!("the guest reported system event {kind} (crash)"));
                }
                VcpuExit::Shutdown => {
                    return self.failed(
                        "the guest triple-faulted (KVM shutdown exit): an exception it could not handle"
                            .into(),
                    );
                }
                VcpuExit::InternalError => {
                    let suberror = self.internal_error_suberror();
                    let what = match suberror {
                        1 => "KVM could not emulate an instruction (emulation failure)",
                        2 => "a fault happened while delivering an event (simultaneous exception)",
                        3 => "KVM could not deliver an event",
                        _ => "KVM reported an internal error",
                    };
                    return self.failed(format!("{what} (suberror {suberror})"));
                }
                VcpuExit::FailEntry(reason, cpu) => {
                    return self.failed(format!(
                        "the hardware refused to enter the guest (reason {reason:#x}, host cpu {cpu})"
                    ));
                }
                VcpuExit::Hlt => {
                    return self
                        .failed("the vCPU halted and KVM handed the halt to the VMM".into());
                }
                VcpuExit::Intr => {}
                other => {
                    let what = format!("unexpected vCPU exit {other:?}");
                    return self.failed(what);
                }
            }
        }
    }

    fn internal_error_suberror(&mut self) -> u32 {
        let run = self.fd.get_kvm_run();
        // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, for which KVM fills the `internal`
        // member of the exit union; reading a u32 from it is reading initialised memory.
        unsafe { run.__bindgen_anon_1.internal.suberror }
    }

    fn failed(&self, reason: String) -> Outcome {
        Outcome::Failed {
            reason: format!("vCPU {}: {reason}", self.index),
            registers: self.describe_registers(),
        }
    }

    /// The registers, for error reports.
    pub fn describe_registers(&self) -> String {
        let regs = match self.fd.get_regs() {
            Ok(r) => r,
            Err(e) => return format!("(registers unavailable: {e})"),
        };
        let sregs = match self.fd.get_sregs() {
            Ok(s) => s,
            Err(e) => return format!("(special registers unavailable: {e})"),
        };
        format!(
            "rip={:#018x} rsp={:#018x} rflags={:#010x}\n\
             rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}\n\
             rsi={:#018x} rdi={:#018x} rbp={:#018x}\n\
             cr0={:#010x} cr3={:#018x} cr4={:#010x} efer={:#06x}\n\
             cs={:#06x} (base {:#x}, l={} db={}) ss={:#06x} gdt={:#x}/{:#x} idt={:#x}/{:#x}",
            regs.rip,
            regs.rsp,
            regs.rflags,
            regs.rax,
            regs.rbx,
            regs.rcx,
            regs.rdx,
            regs.rsi,
            regs.rdi,
            regs.rbp,
            sregs.cr0,
            sregs.cr3,
            sregs.cr4,
            sregs.efer,
            sregs.cs.selector,
            sregs.cs.base,
            sregs.cs.l,
            sregs.cs.db,
            sregs.ss.selector,
            sregs.gdt.base,
            sregs.gdt.limit,
            sregs.idt.base,
            sregs.idt.limit,
        )
    }
}

fn refused_msr_message(index: u32) -> &'static str {
    // Boot setup errors carry static text; name the MSR by what it is.
    match index {
        0x1a0 => "KVM refused IA32_MISC_ENABLE",
        0x2ff => "KVM refused the MTRR default type MSR",
        0x10 => "KVM refused the TSC MSR",
        _ => "KVM refused one of the boot MSRs",
    }
}

/// Routes LINT0 to ExtINT (the legacy PIC) and LINT1 to NMI, as a PC's firmware would.
fn set_lint_modes(lapic: &mut kvm_lapic_state) {
    for (offset, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let reg = read_lapic_reg(lapic, offset);
        write_lapic_reg(lapic, offset, (reg & !0x700) | (mode << 8));
    }
}

fn read_lapic_reg(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    let bytes: Vec<u8> = lapic.regs[offset..offset + 4]
        .iter()
        .map(|&b| b as u8)
        .collect();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn write_lapic_reg(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, b) in value.to_le_bytes().into_iter().enumerate() {
        lapic.regs[offset + i] = b as _;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint0_becomes_extint_and_lint1_nmi_keeping_other_bits() {
        let mut lapic = kvm_lapic_state::default();
        write_lapic_reg(&mut lapic, APIC_LVT0, 0x0001_0000); // masked
        write_lapic_reg(&mut lapic, APIC_LVT1, 0x0001_0700);
        set_lint_modes(&mut lapic);
        assert_eq!(read_lapic_reg(&lapic, APIC_LVT0), 0x0001_0700);
        assert_eq!(read_lapic_reg(&lapic, APIC_LVT1), 0x0001_0400);
    }
}
