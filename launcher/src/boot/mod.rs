//! Direct kernel boot: loads an ELF `vmlinux` (PVH entry note, else the 64-bit Linux entry) or a
//! `bzImage`, the initrd and the command line, and writes the boot structures the kernel reads.

mod open;
mod pvh;
mod zeropage;

pub use open::{BootFile, open};

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, Elf, KernelLoader, PvhBootCapability};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub use pvh::write_start_info;
pub use zeropage::build_zero_page;

use crate::Error;
use crate::arch::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START, MMIO_GAP_START, e820_map};
use crate::arch::regs::BootProtocol;
use launcher_api::DisplayConfig;

/// Offset of the 64-bit entry point (`startup_64`) in a loaded bzImage.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// Page size, for aligning the initrd.
const PAGE_SIZE: u64 = 0x1000;
/// Highest initrd address a kernel accepts unless its header says otherwise.
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;

/// What the vCPU needs to enter the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootEntry {
    /// How to enter.
    pub protocol: BootProtocol,
    /// The entry address.
    pub entry: u64,
}

/// Where the initrd was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitrdPlacement {
    /// Guest physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Loads kernel, initrd and command line into `mem` (of `mem_size` bytes of RAM) and writes the
/// boot structures of the protocol the kernel supports.
pub fn load(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    kernel: BootFile,
    initrd: Option<BootFile>,
    cmdline: &str,
    display: Option<DisplayConfig>,
) -> Result<BootEntry, Error> {
    let BootFile {
        path: kernel,
        file: mut kernel_file,
    } = kernel;
    let (entry, header) = load_kernel(mem, &mut kernel_file, &kernel)?;

    let initrd = match initrd {
        Some(file) => Some(load_initrd(mem, mem_size, file, header.as_ref())?),
        None => None,
    };
    write_cmdline(mem, cmdline)?;

    let map = e820_map(mem_size);
    match entry.protocol {
        BootProtocol::Pvh => write_start_info(mem, &map, initrd)?,
        BootProtocol::Linux64 => {
            let params = build_zero_page(header, &map, cmdline.len(), initrd, display)?;
            zeropage::write(mem, &params)?;
        }
    }
    Ok(entry)
}

fn load_kernel(
    mem: &GuestMemoryMmap,
    file: &mut File,
    path: &Path,
) -> Result<(BootEntry, Option<setup_header>), Error> {
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
        .map_err(|e| Error::file("kernel", path, e))?;
    let himem = Some(GuestAddress(HIMEM_START));
    if magic == *b"\x7fELF" {
        let loaded = Elf::load(mem, None, file, himem).map_err(|e| Error::KernelLoad {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let entry = match loaded.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(addr) => BootEntry {
                protocol: BootProtocol::Pvh,
                entry: addr.0,
            },
            _ => BootEntry {
                protocol: BootProtocol::Linux64,
                entry: loaded.kernel_load.0,
            },
        };
        Ok((entry, None))
    } else {
        let loaded = BzImage::load(mem, None, file, himem).map_err(|e| Error::KernelLoad {
            path: path.to_owned(),
            message: format!("neither an ELF vmlinux nor a bzImage: {e}"),
        })?;
        let entry = BootEntry {
            protocol: BootProtocol::Linux64,
            entry: loaded.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET,
        };
        Ok((entry, loaded.setup_header))
    }
}

/// Places the initrd at the top of low RAM, page aligned, below the kernel's limit.
fn load_initrd(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    initrd: BootFile,
    header: Option<&setup_header>,
) -> Result<InitrdPlacement, Error> {
    let BootFile { path, mut file } = initrd;
    let path = path.as_path();
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| Error::file("initrd", path, e))?;
    let size = data.len() as u64;
    let addr_max = header
        .map(|h| u64::from(h.initrd_addr_max))
        .filter(|&max| max != 0)
        .unwrap_or(DEFAULT_INITRD_ADDR_MAX);
    let top = mem_size.min(MMIO_GAP_START).min(addr_max + 1);
    let addr = top
        .checked_sub(size)
        .map(|a| a & !(PAGE_SIZE - 1))
        .filter(|&a| a >= HIMEM_START)
        .ok_or_else(|| Error::InitrdTooLarge {
            path: path.to_owned(),
            size,
            room: top.saturating_sub(HIMEM_START),
        })?;
    mem.write_slice(&data, GuestAddress(addr))
        .map_err(|_| Error::BootSetup("cannot write the initrd into guest memory"))?;
    Ok(InitrdPlacement { addr, size })
}

fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<(), Error> {
    if cmdline.len() >= CMDLINE_MAX_SIZE {
        return Err(Error::CmdlineTooLong {
            len: cmdline.len(),
            max: CMDLINE_MAX_SIZE - 1,
        });
    }
    if cmdline.bytes().any(|b| b == 0) {
        return Err(launcher_api::ConfigError::new("cmdline", "must not contain NUL bytes").into());
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_START))
        .map_err(|_| Error::BootSetup("cannot write the command line"))
}
