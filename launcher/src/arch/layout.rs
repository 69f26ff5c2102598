//! Where things live in guest physical memory (x86-64).
//!
//! Low memory follows the PC layout stock kernels expect; RAM above 3 GiB is moved above 4 GiB
//! to leave the 32-bit MMIO hole (local APIC, I/O APIC, future PCI BARs) free.

/// The boot GDT.
pub const BOOT_GDT_START: u64 = 0x500;
/// The (empty) boot IDT.
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (the initrd), right after the start info.
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map table.
pub const PVH_MEMMAP_START: u64 = 0x6100;
/// Most entries the PVH memory map may hold (up to the zero page).
pub const PVH_MEMMAP_MAX_ENTRIES: usize = 128;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Stack of the boot vCPU for the 64-bit Linux entry.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4 of the boot identity mapping.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table of the boot identity mapping.
pub const PDPTE_START: u64 = 0xa000;
/// Page directories (2 MiB pages) of the boot identity mapping: four pages, 4 GiB mapped.
pub const PDE_START: u64 = 0xb000;
/// The kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Longest command line, NUL included (x86's `COMMAND_LINE_SIZE`).
pub const CMDLINE_MAX_SIZE: usize = launcher_api::limits::CMDLINE_MAX_SIZE;
/// Start of the extended BIOS data area: RAM below it is usable.
pub const EBDA_START: u64 = 0x9fc00;
/// Where kernels load: 1 MiB.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole: 4 GiB.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// The guest framebuffer: RAM-backed, in the 32-bit hole so that e820 never offers it as
/// memory; up to 7680x4320x4 bytes fit below the I/O APIC.
pub const FRAMEBUFFER_START: u64 = 0xe000_0000;
/// The most bytes a framebuffer may take.
pub const FRAMEBUFFER_MAX_SIZE: u64 = IOAPIC_START - FRAMEBUFFER_START;
// The largest display (7680x4320, 4 bytes a pixel) fits between the framebuffer's start and
// the I/O APIC, inside the 32-bit hole.
const _: () =
    assert!(7680 * 4320 * 4 <= FRAMEBUFFER_MAX_SIZE && FRAMEBUFFER_START >= MMIO_GAP_START);

/// The local APIC's MMIO page.
pub const LAPIC_START: u64 = 0xfee0_0000;
/// The I/O APIC's MMIO page.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The KVM TSS, three pages just below the I/O APIC.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;

/// An e820 memory type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Type {
    /// Usable RAM.
    Ram = 1,
    /// Reserved.
    Reserved = 2,
}

/// One entry of the guest's memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// What it is.
    pub kind: E820Type,
}

/// The RAM regions of a guest with `mem_size` bytes: `(start, length)` pairs.
pub fn ram_regions(mem_size: u64) -> Vec<(u64, u64)> {
    if mem_size <= MMIO_GAP_START {
        vec![(0, mem_size)]
    } else {
        vec![
            (0, MMIO_GAP_START),
            (MMIO_GAP_END, mem_size - MMIO_GAP_START),
        ]
    }
}

/// The e820 map a guest with `mem_size` bytes of RAM sees: low RAM up to the EBDA, the legacy
/// hole as reserved, RAM from 1 MiB up to the MMIO hole, and the rest above 4 GiB.
pub fn e820_map(mem_size: u64) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820Type::Ram,
        },
        E820Entry {
            addr: EBDA_START,
            size: HIMEM_START - EBDA_START,
            kind: E820Type::Reserved,
        },
    ];
    let low_end = mem_size.min(MMIO_GAP_START);
    if low_end > HIMEM_START {
        map.push(E820Entry {
            addr: HIMEM_START,
            size: low_end - HIMEM_START,
            kind: E820Type::Ram,
        });
    }
    if mem_size > MMIO_GAP_START {
        map.push(E820Entry {
            addr: MMIO_GAP_END,
            size: mem_size - MMIO_GAP_START,
            kind: E820Type::Ram,
        });
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_has_one_region_and_no_high_ram() {
        assert_eq!(ram_regions(512 << 20), vec![(0, 512 << 20)]);
        let map = e820_map(512 << 20);
        assert_eq!(map.len(), 3);
        assert_eq!(
            map[2],
            E820Entry {
                addr: 0x10_0000,
                size: (512 << 20) - 0x10_0000,
                kind: E820Type::Ram
            }
        );
    }

    #[test]
    fn large_guest_skips_the_mmio_hole() {
        let size = 4u64 << 30;
        assert_eq!(ram_regions(size), vec![(0, 3 << 30), (4 << 30, 1 << 30)]);
        let map = e820_map(size);
        assert_eq!(map[2].addr + map[2].size, 0xc000_0000);
        assert_eq!(
            map[3],
            E820Entry {
                addr: 4 << 30,
                size: 1 << 30,
                kind: E820Type::Ram
            }
        );
        let ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820Type::Ram)
            .map(|e| e.size)
            .sum();
        // Everything but the legacy hole between the EBDA and 1 MiB is RAM.
        assert_eq!(ram, size - (0x10_0000 - 0x9fc00));
    }

    #[test]
    fn boot_structures_do_not_overlap() {
        let spans = [
            (BOOT_GDT_START, 0x20),
            (BOOT_IDT_START, 0x8),
            (PVH_INFO_START, 56),
            (PVH_MODLIST_START, 32),
            (PVH_MEMMAP_START, 24 * PVH_MEMMAP_MAX_ENTRIES as u64),
            (ZERO_PAGE_START, 0x1000),
            (PML4_START, 0x1000),
            (PDPTE_START, 0x1000),
            (PDE_START, 0x4000),
            (CMDLINE_START, CMDLINE_MAX_SIZE as u64),
        ];
        for (i, a) in spans.iter().enumerate() {
            for b in &spans[i + 1..] {
                assert!(
                    a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0,
                    "{a:x?} overlaps {b:x?}"
                );
            }
            assert!(a.0 + a.1 <= EBDA_START);
        }
    }
}
