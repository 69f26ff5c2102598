//! The Linux zero page (`struct boot_params`, Documentation/arch/x86/boot.rst and zero-page.rst).

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, screen_info, setup_header};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::InitrdPlacement;
use crate::Error;
use crate::arch::layout::{CMDLINE_START, E820Entry, FRAMEBUFFER_START, ZERO_PAGE_START};
use launcher_api::DisplayConfig;

/// `boot_flag`: the 0xAA55 signature.
const BOOT_FLAG: u16 = 0xaa55;
/// `header`: "HdrS".
const HDRS_MAGIC: u32 = 0x5372_6448;
/// `type_of_loader`: 0xff, "undefined" (we have no assigned loader id).
const LOADER_UNDEFINED: u8 = 0xff;
/// `kernel_alignment` for an ELF vmlinux, which has no header of its own: 16 MiB.
const KERNEL_ALIGNMENT: u32 = 0x0100_0000;
/// `loadflags`: LOADED_HIGH, the protected-mode kernel is at 1 MiB.
const LOADED_HIGH: u8 = 0x1;

/// `orig_video_isVGA` for an EFI graphics framebuffer, which Linux's `efifb` drives.
const VIDEO_TYPE_EFI: u8 = 0x70;

/// The `screen_info` of a 32-bit linear framebuffer of `display`'s size at
/// [`FRAMEBUFFER_START`], in the x8r8g8b8 layout (blue in the low byte).
pub fn framebuffer_screen_info(display: DisplayConfig) -> screen_info {
    let stride = display.width * 4;
    screen_info {
        orig_video_isVGA: VIDEO_TYPE_EFI,
        lfb_width: display.width as u16,
        lfb_height: display.height as u16,
        lfb_depth: 32,
        lfb_base: FRAMEBUFFER_START as u32,
        lfb_size: stride * display.height,
        lfb_linelength: stride as u16,
        red_size: 8,
        red_pos: 16,
        green_size: 8,
        green_pos: 8,
        blue_size: 8,
        blue_pos: 0,
        rsvd_size: 8,
        rsvd_pos: 24,
        ..Default::default()
    }
}

/// Builds the zero page: the kernel's own setup header (bzImage) or a minimal one (vmlinux),
/// with the loader's fields, the command line, the initrd, the e820 map and (with a display)
/// the framebuffer's `screen_info` filled in.
pub fn build_zero_page(
    header: Option<setup_header>,
    map: &[E820Entry],
    cmdline_len: usize,
    initrd: Option<InitrdPlacement>,
    display: Option<DisplayConfig>,
) -> Result<boot_params, Error> {
    let mut params = boot_params {
        hdr: header.unwrap_or(setup_header {
            boot_flag: BOOT_FLAG,
            header: HDRS_MAGIC,
            kernel_alignment: KERNEL_ALIGNMENT,
            ..Default::default()
        }),
        ..Default::default()
    };
    params.hdr.type_of_loader = LOADER_UNDEFINED;
    params.hdr.loadflags |= LOADED_HIGH;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = (cmdline_len + 1) as u32;
    if let Some(initrd) = initrd {
        params.hdr.ramdisk_image = u32::try_from(initrd.addr)
            .map_err(|_| Error::BootSetup("the initrd must sit below 4 GiB"))?;
        params.hdr.ramdisk_size = u32::try_from(initrd.size)
            .map_err(|_| Error::BootSetup("the initrd must be smaller than 4 GiB"))?;
    }
    if map.len() > params.e820_table.len() {
        return Err(Error::BootSetup("too many e820 entries for the zero page"));
    }
    for (slot, e) in params.e820_table.iter_mut().zip(map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind as u32,
        };
    }
    params.e820_entries = map.len() as u8;
    if let Some(display) = display {
        params.screen_info = framebuffer_screen_info(display);
    }
    Ok(params)
}

/// Writes the zero page at its fixed address.
pub fn write(mem: &GuestMemoryMmap, params: &boot_params) -> Result<(), Error> {
    mem.write_obj(*params, GuestAddress(ZERO_PAGE_START))
        .map_err(|_| Error::BootSetup("cannot write the zero page"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::layout::e820_map;

    fn bytes_of(params: &boot_params) -> Vec<u8> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write(&mem, params).unwrap();
        let mut page = vec![0u8; 4096];
        mem.read_slice(&mut page, GuestAddress(0x7000)).unwrap();
        page
    }
    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    /// Offsets from the boot protocol's tables (boot.rst "The real-mode kernel header", and
    /// zero-page.rst), not from our structs.
    #[test]
    fn zero_page_fields_sit_at_the_documented_offsets() {
        let map = e820_map(512 << 20);
        let initrd = InitrdPlacement {
            addr: 0x1f00_0000,
            size: 0x0020_0000,
        };
        let params = build_zero_page(None, &map, 21, Some(initrd), None).unwrap();
        let b = bytes_of(&params);
        assert_eq!(b.len(), 4096);
        assert_eq!(u16_at(&b, 0x1fe), 0xaa55, "boot_flag at 0x1FE");
        assert_eq!(u32_at(&b, 0x202), 0x5372_6448, "header 'HdrS' at 0x202");
        assert_eq!(b[0x210], 0xff, "type_of_loader at 0x210");
        assert_eq!(b[0x211] & 0x1, 0x1, "loadflags LOADED_HIGH at 0x211");
        assert_eq!(u32_at(&b, 0x218), 0x1f00_0000, "ramdisk_image at 0x218");
        assert_eq!(u32_at(&b, 0x21c), 0x0020_0000, "ramdisk_size at 0x21C");
        assert_eq!(u32_at(&b, 0x228), 0x20000, "cmd_line_ptr at 0x228");
        assert_eq!(u32_at(&b, 0x230), 0x0100_0000, "kernel_alignment at 0x230");
        assert_eq!(u32_at(&b, 0x238), 22, "cmdline_size at 0x238");
        assert_eq!(b[0x1e8] as usize, map.len(), "e820_entries at 0x1E8");
        // e820_table at 0x2D0: 20-byte entries of addr (u64), size (u64), type (u32).
        for (i, e) in map.iter().enumerate() {
            let at = 0x2d0 + 20 * i;
            assert_eq!(u64_at(&b, at), e.addr);
            assert_eq!(u64_at(&b, at + 8), e.size);
            assert_eq!(u32_at(&b, at + 16), e.kind as u32);
        }
    }

    /// Offsets from include/uapi/linux/screen_info.h (struct screen_info, at the start of the
    /// zero page), not from our structs.
    #[test]
    fn screen_info_describes_an_efi_framebuffer_at_the_documented_offsets() {
        let display = DisplayConfig {
            width: 1280,
            height: 800,
        };
        let params = build_zero_page(None, &e820_map(256 << 20), 0, None, Some(display)).unwrap();
        let b = bytes_of(&params);
        assert_eq!(b[0x0f], 0x70, "orig_video_isVGA = VIDEO_TYPE_EFI at 0x0F");
        assert_eq!(u16_at(&b, 0x12), 1280, "lfb_width at 0x12");
        assert_eq!(u16_at(&b, 0x14), 800, "lfb_height at 0x14");
        assert_eq!(u16_at(&b, 0x16), 32, "lfb_depth at 0x16");
        assert_eq!(u32_at(&b, 0x18), 0xe000_0000, "lfb_base at 0x18");
        assert_eq!(u32_at(&b, 0x1c), 1280 * 4 * 800, "lfb_size at 0x1C");
        assert_eq!(u16_at(&b, 0x24), 1280 * 4, "lfb_linelength at 0x24");
        assert_eq!(
            &b[0x26..0x2e],
            &[8, 16, 8, 8, 8, 0, 8, 24],
            "red/green/blue/rsvd size,pos at 0x26"
        );
        assert_eq!(
            u32_at(&b, 0x3a),
            0,
            "ext_lfb_base at 0x3A: the framebuffer sits below 4 GiB"
        );
        let none = build_zero_page(None, &e820_map(256 << 20), 0, None, None).unwrap();
        assert_eq!(bytes_of(&none)[0x0f], 0, "no display, no screen_info");
    }

    #[test]
    fn a_bzimage_header_is_kept_and_loader_fields_set() {
        let header = setup_header {
            boot_flag: 0xaa55,
            header: 0x5372_6448,
            version: 0x020f,
            loadflags: 0x80, // CAN_USE_HEAP, as the image had it
            initrd_addr_max: 0x7fff_ffff,
            ..Default::default()
        };
        let params = build_zero_page(Some(header), &e820_map(256 << 20), 0, None, None).unwrap();
        let b = bytes_of(&params);
        assert_eq!(u16_at(&b, 0x206), 0x020f, "version at 0x206 kept");
        assert_eq!(b[0x211], 0x81, "loadflags keep the image's bits");
        assert_eq!(u32_at(&b, 0x218), 0, "no ramdisk");
        assert_eq!(
            u32_at(&b, 0x22c),
            0x7fff_ffff,
            "initrd_addr_max at 0x22C kept"
        );
    }
}
