//! The one place a VM is assembled, and the loop that runs it until it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::Kvm;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

use crate::Error;
use crate::boot;
use crate::devices::Devices;
use crate::devices::i8042::{KEYBOARD_IRQ, MOUSE_IRQ};
use crate::devices::serial::{COM1_IRQ, ConsoleBuffer, ConsoleSink, new_com1};
use crate::display::Framebuffer;
use crate::vstate::vcpu::{Outcome, Vcpu};
use crate::vstate::{memory, vm::Vm};
use launcher_api::{ExitStatus, VmConfig};

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
fn kick_signal() -> i32 {
    SIGRTMIN()
}

/// How the console is wired.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// Copy guest output to the launcher's stdout.
    pub stdout: bool,
    /// Bytes of console history kept for `/console`.
    pub buffer_bytes: usize,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        Self {
            stdout: true,
            buffer_bytes: 64 << 10,
        }
    }
}

/// How a VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest powered off.
    PowerOff,
    /// The guest asked for a reset (a reboot); the pod's restart policy brings it back.
    Reset,
    /// Asked to stop, the guest shut down (powered off, or rebooted as Linux does on
    /// Ctrl+Alt+Del) within the grace period.
    ShutDown,
    /// The VMM stopped it: the guest did not shut down within the grace period, or a second
    /// request asked for an immediate stop.
    Stopped,
    /// The guest crashed or KVM failed: what happened, with the registers.
    Crashed {
        /// What happened, naming the vCPU.
        reason: String,
        /// The vCPU's registers at that moment.
        registers: String,
    },
}

impl VmExit {
    /// The launcher's exit status for this ending (the operator reads it back from the pod).
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            VmExit::PowerOff | VmExit::ShutDown => ExitStatus::PoweredOff,
            VmExit::Reset => ExitStatus::Reset,
            VmExit::Crashed { .. } => ExitStatus::Crashed,
            VmExit::Stopped => ExitStatus::StoppedHard,
        }
    }
}

/// A VM, built and ready to run.
pub struct Machine {
    // Field order matters on drop: vCPUs and the VM go before the memory they map.
    vcpus: Vec<Vcpu>,
    vm: Vm,
    devices: Arc<Devices>,
    console: ConsoleBuffer,
    mem: GuestMemoryMmap,
    framebuffer: Option<Framebuffer>,
    started: Instant,
}

impl Machine {
    /// Opens `/dev/kvm` and builds the VM `config` describes: memory, irqchip, devices, boot
    /// structures and vCPUs.
    pub fn build(config: &VmConfig, console: ConsoleOptions) -> Result<Self, Error> {
        let started = Instant::now();
        // Bad input is reported as such, whatever this host's KVM can do.
        let kernel = boot::open("kernel", &config.kernel, config.kernel_root.as_deref())?;
        let initrd = match &config.initrd {
            Some(path) => Some(boot::open("initrd", path, config.initrd_root.as_deref())?),
            None => None,
        };
        let kvm = Kvm::new()
            .map_err(|e| Error::KvmUnavailable(std::io::Error::from_raw_os_error(e.errno())))?;
        let framebuffer_bytes = config
            .display
            .map(|d| u64::from(d.width) * u64::from(d.height) * 4);
        let mem = memory::create(config.memory, framebuffer_bytes)?;
        let vm = Vm::new(&kvm, &mem)?;

        let buffer = ConsoleBuffer::new(console.buffer_bytes);
        let com1 = new_com1(
            vm.irqfd(COM1_IRQ)?,
            ConsoleSink::new(buffer.clone(), console.stdout),
        );
        let devices = Arc::new(Devices::new(
            com1,
            vm.irqfd(KEYBOARD_IRQ)?,
            vm.irqfd(MOUSE_IRQ)?,
            started,
        ));

        let entry = boot::load(
            &mem,
            config.memory,
            kernel,
            initrd,
            &config.cmdline,
            config.display,
        )?;

        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| Error::kvm("KVM_GET_SUPPORTED_CPUID", e))?;
        let vcpus = (0..config.cpus)
            .map(|i| {
                Vcpu::new(
                    &vm,
                    i,
                    config.cpus,
                    &supported,
                    &mem,
                    (i == 0).then_some(entry),
                )
            })
            .collect::<Result<Vec<_>, Error>>()?;

        let framebuffer = config.display.map(|d| {
            let fb = Framebuffer::new(mem.clone(), d);
            match vm.framebuffer_log() {
                Some(log) => fb.with_dirty_log(log),
                None => fb,
            }
        });
        Ok(Self {
            vcpus,
            vm,
            devices,
            console: buffer,
            mem,
            framebuffer,
            started,
        })
    }

    /// The console history, shared with whoever serves it.
    pub fn console(&self) -> ConsoleBuffer {
        self.console.clone()
    }

    /// The guest framebuffer, when the VM has a display.
    pub fn framebuffer(&self) -> Option<Framebuffer> {
        self.framebuffer.clone()
    }

    /// The devices (boot progress, ...).
    pub fn devices(&self) -> Arc<Devices> {
        Arc::clone(&self.devices)
    }

    /// When building started; boot progress is timed from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Runs every vCPU on its own thread until the guest powers off, resets or crashes, or it
    /// is stopped. `stop_requests` counts requests to stop (SIGTERM, SIGINT): the first asks
    /// the guest to shut down (Ctrl+Alt+Del) and stops it hard after `grace`; a second stops it
    /// at once. Always joins every vCPU thread before returning.
    pub fn run(self, stop_requests: &AtomicUsize, grace: Duration) -> Result<VmExit, Error> {
        // A no-op handler: the signal's only job is to make KVM_RUN return EINTR.
        register_signal_handler(kick_signal(), noop_signal_handler).map_err(|e| {
            Error::Io(
                "registering the vCPU kick signal",
                std::io::Error::from_raw_os_error(e.errno()),
            )
        })?;

        let Machine {
            vcpus,
            vm,
            devices,
            mem,
            ..
        } = self;
        let halt = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Outcome>();
        let mut threads: Vec<JoinHandle<()>> = Vec::with_capacity(vcpus.len());
        for mut vcpu in vcpus {
            let devices = Arc::clone(&devices);
            let halt_flag = Arc::clone(&halt);
            let tx = tx.clone();
            let name = format!("vcpu{}", vcpu.index());
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                let outcome = vcpu.run(&devices, &halt_flag);
                let _ = tx.send(outcome);
            });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    // Never leave the vCPUs already started running on their own.
                    stop_vcpu_threads(&halt, threads);
                    return Err(Error::Io("spawning a vCPU thread", e));
                }
            }
        }
        drop(tx);

        let mut asked: Option<Instant> = None;
        let exit = loop {
            match (stop_requests.load(Ordering::Acquire), asked) {
                (0, _) => {}
                (1, None) => {
                    eprintln!(
                        "verdant-launcher: asking the guest to shut down (Ctrl+Alt+Del); stopping it in {} s",
                        grace.as_secs()
                    );
                    devices.request_shutdown();
                    asked = Some(Instant::now());
                }
                (1, Some(at)) if at.elapsed() < grace => {}
                _ => break VmExit::Stopped,
            }
            let tick = Duration::from_millis(50);
            match rx.recv_timeout(tick) {
                Ok(Outcome::Stopped) => continue,
                Ok(Outcome::PowerOff | Outcome::Reset) if asked.is_some() => {
                    break VmExit::ShutDown;
                }
                Ok(Outcome::PowerOff) => break VmExit::PowerOff,
                Ok(Outcome::Reset) => break VmExit::Reset,
                Ok(Outcome::Failed { reason, registers }) => {
                    break VmExit::Crashed { reason, registers };
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break VmExit::Crashed {
                        reason: "every vCPU thread ended without a reason".into(),
                        registers: String::new(),
                    };
                }
            }
        };

        stop_vcpu_threads(&halt, threads);
        drop(vm);
        drop(mem);
        Ok(exit)
    }
}

/// Stops and joins vCPU threads: sets the flag, then kicks until every thread is gone (a kick can
/// land just before a thread enters KVM_RUN, so one is not enough).
fn stop_vcpu_threads(halt: &AtomicBool, threads: Vec<JoinHandle<()>>) {
    halt.store(true, Ordering::Release);
    while threads.iter().any(|t| !t.is_finished()) {
        for t in threads.iter().filter(|t| !t.is_finished()) {
            let _ = t.kill(kick_signal());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for t in threads {
        let _ = t.join();
    }
}

extern "C" fn noop_signal_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
