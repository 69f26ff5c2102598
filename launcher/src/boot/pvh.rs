//! The PVH boot structures (`xen/include/public/arch-x86/hvm/start_info.h`).

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use super::InitrdPlacement;
use crate::Error;
use crate::arch::layout::{
    CMDLINE_START, E820Entry, PVH_INFO_START, PVH_MEMMAP_MAX_ENTRIES, PVH_MEMMAP_START,
    PVH_MODLIST_START,
};

/// `XEN_HVM_START_MAGIC_VALUE`.
const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

#[derive(Clone, Copy, Default)]
#[repr(transparent)]
struct StartInfo(hvm_start_info);
// SAFETY: hvm_start_info is a plain #[repr(C)] struct of integers with no padding holes that
// could hold uninitialised bytes (56 bytes, asserted by linux-loader); any bit pattern is valid.
unsafe impl ByteValued for StartInfo {}

#[derive(Clone, Copy, Default)]
#[repr(transparent)]
struct MemmapEntry(hvm_memmap_table_entry);
// SAFETY: as above: a #[repr(C)] struct of integers, 24 bytes, every bit pattern valid.
unsafe impl ByteValued for MemmapEntry {}

#[derive(Clone, Copy, Default)]
#[repr(transparent)]
struct ModlistEntry(hvm_modlist_entry);
// SAFETY: as above: a #[repr(C)] struct of integers, 32 bytes, every bit pattern valid.
unsafe impl ByteValued for ModlistEntry {}

/// Writes `hvm_start_info`, its memory map and (with an initrd) its module list.
pub fn write_start_info(
    mem: &GuestMemoryMmap,
    map: &[E820Entry],
    initrd: Option<InitrdPlacement>,
) -> Result<(), Error> {
    if map.len() > PVH_MEMMAP_MAX_ENTRIES {
        return Err(Error::BootSetup("too many memory map entries for PVH"));
    }
    let err = |_| Error::BootSetup("cannot write the PVH start info");
    for (i, e) in map.iter().enumerate() {
        let entry = MemmapEntry(hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind as u32,
            reserved: 0,
        });
        mem.write_obj(entry, GuestAddress(PVH_MEMMAP_START + 24 * i as u64))
            .map_err(err)?;
    }
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: CMDLINE_START,
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if let Some(initrd) = initrd {
        let module = ModlistEntry(hvm_modlist_entry {
            paddr: initrd.addr,
            size: initrd.size,
            ..Default::default()
        });
        mem.write_obj(module, GuestAddress(PVH_MODLIST_START))
            .map_err(err)?;
        info.nr_modules = 1;
        info.modlist_paddr = PVH_MODLIST_START;
    }
    mem.write_obj(StartInfo(info), GuestAddress(PVH_INFO_START))
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::layout::e820_map;

    fn read_u32(mem: &GuestMemoryMmap, addr: u64) -> u32 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }
    fn read_u64(mem: &GuestMemoryMmap, addr: u64) -> u64 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    /// Offsets from the comment block of Xen's start_info.h ("hvm_start_info" and
    /// "hvm_memmap_table_entry"), not from our structs.
    #[test]
    fn start_info_fields_sit_at_the_documented_offsets() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let map = e820_map(256 << 20);
        let initrd = InitrdPlacement {
            addr: 0x0f00_0000,
            size: 0x1234,
        };
        write_start_info(&mem, &map, Some(initrd)).unwrap();
        let base = 0x6000;
        assert_eq!(read_u32(&mem, base), 0x336e_c578, "magic at 0");
        assert_eq!(read_u32(&mem, base + 4), 1, "version at 4");
        assert_eq!(read_u32(&mem, base + 8), 0, "flags at 8");
        assert_eq!(read_u32(&mem, base + 12), 1, "nr_modules at 12");
        assert_eq!(read_u64(&mem, base + 16), 0x6040, "modlist_paddr at 16");
        assert_eq!(read_u64(&mem, base + 24), 0x20000, "cmdline_paddr at 24");
        assert_eq!(read_u64(&mem, base + 32), 0, "rsdp_paddr at 32");
        assert_eq!(read_u64(&mem, base + 40), 0x6100, "memmap_paddr at 40");
        assert_eq!(
            read_u32(&mem, base + 48),
            map.len() as u32,
            "memmap_entries at 48"
        );

        // hvm_modlist_entry: paddr at 0, size at 8, cmdline_paddr at 16.
        assert_eq!(read_u64(&mem, 0x6040), 0x0f00_0000);
        assert_eq!(read_u64(&mem, 0x6048), 0x1234);
        assert_eq!(read_u64(&mem, 0x6050), 0);

        // hvm_memmap_table_entry: addr at 0, size at 8, type at 16; 24 bytes each.
        for (i, e) in map.iter().enumerate() {
            let at = 0x6100 + 24 * i as u64;
            assert_eq!(read_u64(&mem, at), e.addr);
            assert_eq!(read_u64(&mem, at + 8), e.size);
            assert_eq!(read_u32(&mem, at + 16), e.kind as u32);
        }
        // XEN_HVM_MEMMAP_TYPE_RAM = 1, _RESERVED = 2.
        assert_eq!(read_u32(&mem, 0x6100 + 16), 1);
        assert_eq!(read_u32(&mem, 0x6100 + 24 + 16), 2);
    }

    #[test]
    fn without_initrd_no_module_is_listed() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_start_info(&mem, &e820_map(128 << 20), None).unwrap();
        assert_eq!(read_u32(&mem, 0x6000 + 12), 0);
        assert_eq!(read_u64(&mem, 0x6000 + 16), 0);
    }
}
