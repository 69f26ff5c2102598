//! The guest's devices and the port-I/O and MMIO dispatch every vCPU thread goes through.

pub mod boot_progress;
pub mod i8042;
pub mod keymap;
pub mod power;
pub mod serial;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use vmm_sys_util::eventfd::EventFd;

use boot_progress::{BOOT_PROGRESS_PORT, BootProgress};
use i8042::{I8042, I8042_COMMAND, I8042_DATA, I8042Action};
use power::SLEEP_CONTROL_PORT;
use serial::{COM1_BASE, COM1_LEN, SerialDevice};

/// How many accesses to nothing are logged before going quiet.
const UNHANDLED_LOG_LIMIT: u32 = 16;

/// What the VMM must do after a device access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoAction {
    /// Keep running.
    Continue,
    /// The guest powered off.
    PowerOff,
    /// The guest asked for a reset.
    Reset,
}

/// Every device of the machine.
pub struct Devices {
    com1: Mutex<SerialDevice>,
    i8042: Mutex<I8042>,
    keyboard_irq: EventFd,
    mouse_irq: EventFd,
    /// Where viewers last put the pointer, to turn absolute positions into PS/2 movement.
    pointer: Mutex<(i32, i32)>,
    progress: Mutex<BootProgress>,
    unhandled: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A vCPU thread that panicked while holding a device must not take the others down.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Devices {
    /// The machine's devices: COM1, the i8042 raising `keyboard_irq` and `mouse_irq`, and the
    /// boot clock started at `start`.
    pub fn new(
        com1: SerialDevice,
        keyboard_irq: EventFd,
        mouse_irq: EventFd,
        start: Instant,
    ) -> Self {
        Self {
            com1: Mutex::new(com1),
            i8042: Mutex::new(I8042::default()),
            keyboard_irq,
            mouse_irq,
            pointer: Mutex::new((0, 0)),
            progress: Mutex::new(BootProgress::new(start)),
            unhandled: AtomicU32::new(0),
        }
    }

    /// The boot steps recorded so far.
    pub fn boot_progress(&self) -> Vec<boot_progress::ProgressEvent> {
        lock(&self.progress).events().to_vec()
    }

    /// A port read of `data.len()` bytes.
    pub fn pio_read(&self, port: u16, data: &mut [u8]) {
        let value = match port {
            p if (COM1_BASE..COM1_BASE + COM1_LEN).contains(&p) => {
                lock(&self.com1).read((p - COM1_BASE) as u8)
            }
            I8042_DATA | I8042_COMMAND => {
                let (value, action) = lock(&self.i8042).read(port);
                self.i8042_action(action);
                value
            }
            // Nothing answers: an ISA bus reads as all ones.
            _ => 0xff,
        };
        data.fill(value);
    }

    /// A port write; returns what the VMM must do next.
    pub fn pio_write(&self, port: u16, data: &[u8]) -> IoAction {
        let Some(&value) = data.first() else {
            return IoAction::Continue;
        };
        match port {
            p if (COM1_BASE..COM1_BASE + COM1_LEN).contains(&p) => {
                if let Err(e) = lock(&self.com1).write((p - COM1_BASE) as u8, value) {
                    self.log_unhandled(format_args!("COM1 write failed: {e:?}"));
                }
            }
            I8042_DATA | I8042_COMMAND => {
                let action = lock(&self.i8042).write(port, value);
                return self.i8042_action(action);
            }
            SLEEP_CONTROL_PORT if power::is_power_off(value) => return IoAction::PowerOff,
            BOOT_PROGRESS_PORT => {
                if let Some(event) = lock(&self.progress).record(value, Instant::now()) {
                    eprintln!(
                        "verdant-launcher: guest reached userspace (boot code {:#04x}) {:.1} ms after start",
                        event.code,
                        event.at.as_secs_f64() * 1000.0
                    );
                }
            }
            _ => {}
        }
        IoAction::Continue
    }

    /// A key pressed or released on a viewer, by X keysym; keys we cannot map are dropped.
    pub fn keysym(&self, keysym: u32, down: bool) {
        if let Some(key) = keymap::key_for_keysym(keysym) {
            let action = lock(&self.i8042).inject_key(key, down);
            self.i8042_action(action);
        }
    }

    /// A key pressed or released on a viewer that sent QEMU's extended key event: the XT
    /// keycode names the physical key, whatever the keyboard layout; the keysym is the fallback.
    pub fn xt_key(&self, keycode: u32, keysym: u32, down: bool) {
        match keymap::key_for_xt(keycode) {
            Some(key) => {
                let action = lock(&self.i8042).inject_key(key, down);
                self.i8042_action(action);
            }
            None => self.keysym(keysym, down),
        }
    }

    /// The pointer moved to (x, y) with `buttons` held (bit 0 left, 1 middle, 2 right): sent
    /// to the guest as PS/2 mouse movement from the last position.
    pub fn pointer(&self, x: u16, y: u16, buttons: u8) {
        let (dx, dy) = {
            let mut last = lock(&self.pointer);
            let delta = (i32::from(x) - last.0, i32::from(y) - last.1);
            *last = (i32::from(x), i32::from(y));
            delta
        };
        // VNC numbers buttons left 1, middle 2, right 4; PS/2 left 1, right 2, middle 4.
        let ps2 = (buttons & 1) | ((buttons & 4) >> 1) | ((buttons & 2) << 1);
        let action = lock(&self.i8042).inject_pointer(dx, dy, ps2);
        self.i8042_action(action);
    }

    /// Asks the guest to shut down the way a PC user would: Ctrl+Alt+Del on the keyboard.
    pub fn request_shutdown(&self) {
        let action = lock(&self.i8042).inject_ctrl_alt_del();
        self.i8042_action(action);
    }

    fn i8042_action(&self, action: I8042Action) -> IoAction {
        match action {
            I8042Action::None => IoAction::Continue,
            I8042Action::Reset => IoAction::Reset,
            I8042Action::Interrupt | I8042Action::AuxInterrupt => {
                let irq = if action == I8042Action::Interrupt {
                    &self.keyboard_irq
                } else {
                    &self.mouse_irq
                };
                if let Err(e) = irq.write(1) {
                    self.log_unhandled(format_args!("cannot raise the i8042 interrupt: {e}"));
                }
                IoAction::Continue
            }
        }
    }

    /// An MMIO read where no device lives: all ones, logged.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        self.log_unhandled(format_args!(
            "guest read {} bytes at {addr:#x}, where no device lives",
            data.len()
        ));
        data.fill(0xff);
    }

    /// An MMIO write where no device lives: dropped, logged.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        self.log_unhandled(format_args!(
            "guest wrote {} bytes at {addr:#x}, where no device lives",
            data.len()
        ));
    }

    fn log_unhandled(&self, what: std::fmt::Arguments<'_>) {
        let n = self.unhandled.fetch_add(1, Ordering::Relaxed);
        if n < UNHANDLED_LOG_LIMIT {
            eprintln!("verdant-launcher: {what}");
        } else if n == UNHANDLED_LOG_LIMIT {
            eprintln!(
                "verdant-launcher: more unhandled device accesses follow; no longer logging them"
            );
        }
    }
}

/// Viewers' keys and pointer go to the i8042.
impl rfb::InputSink for Devices {
    fn keysym(&self, keysym: u32, down: bool) {
        Devices::keysym(self, keysym, down);
    }

    fn xt_key(&self, keycode: u32, keysym: u32, down: bool) {
        Devices::xt_key(self, keycode, keysym, down);
    }

    fn pointer(&self, x: u16, y: u16, buttons: u8) {
        Devices::pointer(self, x, y, buttons);
    }
}
