//! The register state a vCPU starts in: segments and GDT, page tables, control registers, FPU
//! and MSRs, for each boot protocol.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START,
    PVH_INFO_START, ZERO_PAGE_START,
};
use crate::Error;

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// How a vCPU enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootProtocol {
    /// Xen's PVH direct boot: 32-bit protected mode, paging off, `%ebx` = `hvm_start_info`.
    Pvh,
    /// Linux's 64-bit boot protocol: long mode, identity-mapped first 4 GiB, `%rsi` = zero page.
    Linux64,
}

/// Encodes a GDT descriptor (Intel SDM vol. 3, 3.4.5): `flags` holds the access byte in bits
/// 0-7 and the G/DB/L/AVL nibble in bits 12-15; `limit` is 20 bits.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The KVM segment register state for GDT `entry` at table index `index`.
pub fn segment_from_gdt(entry: u64, index: u16) -> kvm_segment {
    let bit = |n: u32| ((entry >> n) & 1) as u8;
    let base = ((entry >> 32) & 0xff00_0000) | ((entry >> 16) & 0x00ff_ffff);
    let raw_limit = (((entry >> 32) & 0x000f_0000) | (entry & 0xffff)) as u32;
    let granular = bit(55) == 1;
    let present = bit(47);
    kvm_segment {
        base,
        limit: if granular {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: bit(55),
        avl: bit(52),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// The boot GDT for `protocol`: null, code, data, TSS.
pub fn boot_gdt(protocol: BootProtocol) -> [u64; 4] {
    let code = match protocol {
        BootProtocol::Pvh => gdt_entry(0xc09b, 0, 0xfffff), // 32-bit, 4 KiB granular
        BootProtocol::Linux64 => gdt_entry(0xa09b, 0, 0xfffff), // 64-bit (L set)
    };
    [
        0,
        code,
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x008b, 0, 0x67),
    ]
}

/// Writes the GDT, the empty IDT and (for 64-bit boot) the identity page tables into guest
/// memory, and returns the special registers that go with them.
pub fn boot_sregs(
    mem: &GuestMemoryMmap,
    protocol: BootProtocol,
    mut sregs: kvm_sregs,
) -> Result<kvm_sregs, Error> {
    let gdt = boot_gdt(protocol);
    for (i, entry) in gdt.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT_START + 8 * i as u64))
            .map_err(|_| Error::BootSetup("cannot write the boot GDT"))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(|_| Error::BootSetup("cannot write the boot IDT"))?;

    let code = segment_from_gdt(gdt[1], 1);
    let data = segment_from_gdt(gdt[2], 2);
    let tss = segment_from_gdt(gdt[3], 3);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;

    match protocol {
        BootProtocol::Pvh => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
        BootProtocol::Linux64 => {
            write_identity_page_tables(mem)?;
            sregs.cr3 = PML4_START;
            sregs.cr4 = X86_CR4_PAE;
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
            sregs.efer = EFER_LME | EFER_LMA;
        }
    }
    Ok(sregs)
}

/// Identity-maps the first 4 GiB with 2 MiB pages: PML4[0] -> 4 PDPT entries -> 4 page
/// directories of 512 entries. Kernels build their own tables; the full 4 GiB lets early code
/// (and test guests) reach the framebuffer and the APICs in the 32-bit hole too.
fn write_identity_page_tables(mem: &GuestMemoryMmap) -> Result<(), Error> {
    let err = |_| Error::BootSetup("cannot write the boot page tables");
    mem.write_obj(PDPTE_START | 0x03, GuestAddress(PML4_START))
        .map_err(err)?;
    for dir in 0..BOOT_PAGE_DIRECTORIES {
        let table = PDE_START + dir * 0x1000;
        mem.write_obj(table | 0x03, GuestAddress(PDPTE_START + dir * 8))
            .map_err(err)?;
    }
    for i in 0..512 * BOOT_PAGE_DIRECTORIES {
        // Present, writable, page size (2 MiB).
        mem.write_obj((i << 21) | 0x83, GuestAddress(PDE_START + i * 8))
            .map_err(err)?;
    }
    Ok(())
}

/// Page directories of the boot identity mapping: one per GiB.
pub const BOOT_PAGE_DIRECTORIES: u64 = 4;

/// The general registers of the boot vCPU.
pub fn boot_regs(protocol: BootProtocol, entry: u64) -> kvm_regs {
    let mut regs = kvm_regs {
        rflags: 0x2, // bit 1 is reserved and always set
        rip: entry,
        ..Default::default()
    };
    match protocol {
        BootProtocol::Pvh => regs.rbx = PVH_INFO_START,
        BootProtocol::Linux64 => {
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
            regs.rsi = ZERO_PAGE_START;
        }
    }
    regs
}

/// The FPU state at reset: x87 control word 0x37f, MXCSR 0x1f80 (all exceptions masked).
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MISC_ENABLE_FAST_STRING: u64 = 1;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_TYPE_WRBACK: u64 = 6;

/// The MSRs every vCPU starts with: syscall MSRs cleared, fast strings on, write-back MTRRs.
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    let entry = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    vec![
        entry(MSR_IA32_SYSENTER_CS, 0),
        entry(MSR_IA32_SYSENTER_ESP, 0),
        entry(MSR_IA32_SYSENTER_EIP, 0),
        entry(MSR_STAR, 0),
        entry(MSR_CSTAR, 0),
        entry(MSR_KERNEL_GS_BASE, 0),
        entry(MSR_SYSCALL_MASK, 0),
        entry(MSR_LSTAR, 0),
        entry(MSR_IA32_TSC, 0),
        entry(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        entry(MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRBACK),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_code_segment_decodes_as_the_sdm_says() {
        // 0x00cf9a000000ffff is the textbook flat 32-bit ring-0 code descriptor.
        assert_eq!(gdt_entry(0xc09a, 0, 0xfffff), 0x00cf_9a00_0000_ffff);
        let seg = segment_from_gdt(gdt_entry(0xc09b, 0, 0xfffff), 1);
        assert_eq!((seg.base, seg.limit, seg.selector), (0, 0xffff_ffff, 8));
        assert_eq!(
            (seg.type_, seg.present, seg.s, seg.db, seg.l, seg.g),
            (0xb, 1, 1, 1, 0, 1)
        );
    }

    #[test]
    fn long_mode_code_segment_sets_l_not_db() {
        let seg = segment_from_gdt(boot_gdt(BootProtocol::Linux64)[1], 1);
        assert_eq!((seg.l, seg.db), (1, 0));
    }

    #[test]
    fn tss_is_a_busy_byte_granular_segment() {
        let seg = segment_from_gdt(boot_gdt(BootProtocol::Pvh)[3], 3);
        assert_eq!(
            (seg.type_, seg.s, seg.g, seg.limit, seg.selector),
            (0xb, 0, 0, 0x67, 0x18)
        );
    }

    #[test]
    fn base_and_limit_round_trip() {
        let seg = segment_from_gdt(gdt_entry(0x0093, 0x1234_5678, 0xabcde), 2);
        assert_eq!((seg.base, seg.limit, seg.g), (0x1234_5678, 0xabcde, 0));
    }

    #[test]
    fn pvh_and_linux_entry_registers() {
        let pvh = boot_regs(BootProtocol::Pvh, 0x100000);
        assert_eq!((pvh.rip, pvh.rbx, pvh.rflags), (0x100000, 0x6000, 2));
        let linux = boot_regs(BootProtocol::Linux64, 0x1000000);
        assert_eq!(
            (linux.rip, linux.rsi, linux.rsp),
            (0x1000000, 0x7000, 0x8ff0)
        );
    }

    #[test]
    fn page_tables_identity_map_the_first_4_gib() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let sregs = boot_sregs(&mem, BootProtocol::Linux64, kvm_sregs::default()).unwrap();
        assert_eq!(sregs.cr3, 0x9000);
        assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        let read = |addr: u64| -> u64 { mem.read_obj(GuestAddress(addr)).unwrap() };
        assert_eq!(read(0x9000), 0xa003, "PML4[0] -> PDPT");
        for gib in 0..4 {
            assert_eq!(
                read(0xa000 + gib * 8),
                (0xb000 + gib * 0x1000) | 3,
                "PDPT[{gib}]"
            );
        }
        assert_eq!(read(0xb000), 0x83, "the first 2 MiB page");
        // The 2 MiB page holding the framebuffer at 0xe000_0000 maps to itself.
        let fb_pde = 0xb000 + (0xe000_0000u64 >> 21) * 8;
        assert_eq!(read(fb_pde), 0xe000_0000 | 0x83);
        assert_eq!(
            read(0xb000 + 2047 * 8),
            (2047 << 21) | 0x83,
            "the last page below 4 GiB"
        );
    }
}
