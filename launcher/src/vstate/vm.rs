//! The KVM VM: in-kernel interrupt controllers and timer, memory slots, irqfds.

use std::sync::Arc;

use kvm_bindings::{
    KVM_MEM_LOG_DIRTY_PAGES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::Error;
use crate::arch::layout::{FRAMEBUFFER_START, KVM_TSS_ADDRESS};

/// KVM capabilities the VMM cannot run without, with what each is for.
pub const REQUIRED_CAPS: [(Cap, &str); 6] = [
    (Cap::Irqchip, "in-kernel PIC, I/O APIC and local APICs"),
    (Cap::Pit2, "in-kernel PIT timer"),
    (Cap::UserMemory, "guest memory slots"),
    (Cap::SetTssAddr, "the TSS address Intel VMX needs"),
    (Cap::ExtCpuid, "KVM_GET_SUPPORTED_CPUID"),
    (Cap::Irqfd, "interrupts from device threads"),
];

/// KVM's dirty-page log of one memory slot (the framebuffer's): which pages the guest wrote.
#[derive(Clone)]
pub struct DirtyLog {
    vm: Arc<VmFd>,
    slot: u32,
    bytes: u64,
}

impl DirtyLog {
    /// The log of `slot`, `bytes` long, which was registered with `KVM_MEM_LOG_DIRTY_PAGES`.
    pub fn new(vm: Arc<VmFd>, slot: u32, bytes: u64) -> Self {
        Self { vm, slot, bytes }
    }

    /// The pages written since the last call, one bit each; KVM clears the log as it reads it.
    pub fn take(&self) -> Option<Vec<u64>> {
        self.vm.get_dirty_log(self.slot, self.bytes as usize).ok()
    }
}

/// A VM with its interrupt controllers and memory in place.
pub struct Vm {
    fd: Arc<VmFd>,
    /// KVM tracks the guest's writes to the framebuffer slot.
    framebuffer_log: Option<DirtyLog>,
}

impl Vm {
    /// Creates the VM, its in-kernel irqchip and PIT, and registers `mem`.
    pub fn new(kvm: &Kvm, mem: &GuestMemoryMmap) -> Result<Self, Error> {
        for (cap, what) in REQUIRED_CAPS {
            if !kvm.check_extension(cap) {
                return Err(Error::MissingCapability {
                    cap: format!("{cap:?}"),
                    what,
                });
            }
        }
        let fd = kvm
            .create_vm()
            .map_err(|e| Error::kvm("KVM_CREATE_VM", e))?;
        fd.set_tss_address(KVM_TSS_ADDRESS as usize)
            .map_err(|e| Error::kvm("KVM_SET_TSS_ADDR", e))?;
        fd.create_irq_chip()
            .map_err(|e| Error::kvm("KVM_CREATE_IRQCHIP", e))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit)
            .map_err(|e| Error::kvm("KVM_CREATE_PIT2", e))?;

        let fd = Arc::new(fd);
        let mut framebuffer_log = None;
        for (slot, region) in mem.iter().enumerate() {
            let mut region = kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
                flags: 0,
            };
            if region.guest_phys_addr == FRAMEBUFFER_START {
                // Dirty-page logging finds what the guest drew without reading the whole
                // frame; where KVM refuses it, the display compares frames instead.
                region.flags = KVM_MEM_LOG_DIRTY_PAGES;
                // SAFETY: as below.
                if unsafe { fd.set_user_memory_region(region) }.is_ok() {
                    framebuffer_log = Some(DirtyLog::new(
                        Arc::clone(&fd),
                        region.slot,
                        region.memory_size,
                    ));
                    continue;
                }
                region.flags = 0;
            }
            // SAFETY: the region is a live mapping owned by `mem`, which the caller keeps alive
            // (in the Machine) for as long as this VM exists; the slots do not overlap.
            unsafe { fd.set_user_memory_region(region) }
                .map_err(|e| Error::kvm("KVM_SET_USER_MEMORY_REGION", e))?;
        }
        Ok(Self {
            fd,
            framebuffer_log,
        })
    }

    /// The KVM VM file descriptor.
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    /// KVM's log of the guest's writes to the framebuffer, where KVM keeps one.
    pub fn framebuffer_log(&self) -> Option<DirtyLog> {
        self.framebuffer_log.clone()
    }

    /// An eventfd that raises legacy interrupt line `gsi` when written.
    pub fn irqfd(&self, gsi: u32) -> Result<EventFd, Error> {
        let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Io("eventfd", e))?;
        self.fd
            .register_irqfd(&evt, gsi)
            .map_err(|e| Error::kvm("KVM_IRQFD", e))?;
        Ok(evt)
    }
}
