//! The i8042 PS/2 controller with its keyboard: the controller commands and keyboard commands a
//! Linux guest's probe sends, a reset line (command 0xFE, or output-port bit 0 cleared), and
//! key injection, which the launcher uses to send Ctrl+Alt+Del when asked to stop.
//!
//! The keyboard speaks scancode set 2; when the guest turns on the controller's translation (as
//! a BIOS would), injected keys are sent in set 1 instead (see [`super::keymap`]). A plain PS/2
//! mouse sits on the auxiliary port.

use std::collections::VecDeque;

use super::keymap::{Key, key_for_keysym, scancode_bytes};

/// The data port.
pub const I8042_DATA: u16 = 0x60;
/// The command/status port.
pub const I8042_COMMAND: u16 = 0x64;
/// The keyboard's legacy IRQ line.
pub const KEYBOARD_IRQ: u32 = 1;
/// The mouse's legacy IRQ line.
pub const MOUSE_IRQ: u32 = 12;

// Status register bits.
const SB_OUT_FULL: u8 = 0x01;
const SB_SYSTEM_FLAG: u8 = 0x04;
const SB_LAST_WAS_COMMAND: u8 = 0x08;
const SB_AUX_DATA: u8 = 0x20;

// Control ("command byte") register bits.
const CB_KBD_INT: u8 = 0x01;
const CB_AUX_INT: u8 = 0x02;
const CB_SYSTEM_FLAG: u8 = 0x04;
const CB_KBD_DISABLED: u8 = 0x10;
const CB_AUX_DISABLED: u8 = 0x20;
const CB_TRANSLATE: u8 = 0x40;

// Controller commands (port 0x64).
const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_DISABLE_AUX: u8 = 0xa7;
const CMD_ENABLE_AUX: u8 = 0xa8;
const CMD_TEST_AUX: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_KBD: u8 = 0xab;
const CMD_DISABLE_KBD: u8 = 0xad;
const CMD_ENABLE_KBD: u8 = 0xae;
const CMD_READ_OUTPORT: u8 = 0xd0;
const CMD_WRITE_OUTPORT: u8 = 0xd1;
const CMD_WRITE_KBD_OUT: u8 = 0xd2;
const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_RESET_CPU: u8 = 0xfe;

// Keyboard answers.
const KBD_ACK: u8 = 0xfa;
const KBD_BAT_OK: u8 = 0xaa;
const KBD_ECHO: u8 = 0xee;

/// The most bytes queued for the guest; more are dropped, as a real buffer would overflow.
const OUTPUT_CAPACITY: usize = 64;

/// What a guest access asked of the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I8042Action {
    /// Nothing the VMM must act on.
    None,
    /// Raise the keyboard interrupt: a byte is waiting for the guest.
    Interrupt,
    /// Raise the mouse (auxiliary port) interrupt.
    AuxInterrupt,
    /// The guest asked for a reset.
    Reset,
}

/// A controller command that waits for its data byte on port 0x60.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    WriteCtr,
    WriteOutport,
    WriteKbdOut,
    WriteAux,
    /// A keyboard command (0xED LEDs, 0xF0 scancode set, 0xF3 typematic) wants its argument.
    KeyboardArgument(u8),
}

/// The PS/2 mouse on the auxiliary port.
#[derive(Debug, Default)]
struct Mouse {
    /// Stream-mode reporting is on (command 0xF4).
    reporting: bool,
    /// A command (0xF3 sample rate, 0xE8 resolution) waits for its argument.
    argument: bool,
}

/// The controller, its keyboard and its mouse.
#[derive(Debug)]
pub struct I8042 {
    ctr: u8,
    status: u8,
    pending: Pending,
    /// Bytes for the guest, each marked when it comes from the mouse.
    output: VecDeque<(u8, bool)>,
    mouse: Mouse,
}

impl Default for I8042 {
    fn default() -> Self {
        Self {
            ctr: CB_KBD_INT | CB_SYSTEM_FLAG,
            status: SB_SYSTEM_FLAG,
            pending: Pending::None,
            output: VecDeque::new(),
            mouse: Mouse::default(),
        }
    }
}

impl I8042 {
    /// A port read.
    pub fn read(&mut self, port: u16) -> (u8, I8042Action) {
        if port == I8042_COMMAND {
            let full = match self.output.front() {
                None => 0,
                Some((_, false)) => SB_OUT_FULL,
                Some((_, true)) => SB_OUT_FULL | SB_AUX_DATA,
            };
            return (self.status | full, I8042Action::None);
        }
        let byte = self.output.pop_front().map_or(0, |(b, _)| b);
        // Another byte waiting gets its own interrupt.
        (byte, self.interrupt_if_waiting())
    }

    /// A port write.
    pub fn write(&mut self, port: u16, value: u8) -> I8042Action {
        if port == I8042_COMMAND {
            self.status |= SB_LAST_WAS_COMMAND;
            self.command(value)
        } else {
            self.status &= !SB_LAST_WAS_COMMAND;
            self.data(value)
        }
    }

    fn command(&mut self, cmd: u8) -> I8042Action {
        self.pending = Pending::None;
        match cmd {
            CMD_READ_CTR => return self.push(&[self.ctr]),
            CMD_WRITE_CTR => self.pending = Pending::WriteCtr,
            CMD_DISABLE_AUX => self.ctr |= CB_AUX_DISABLED,
            CMD_ENABLE_AUX => self.ctr &= !CB_AUX_DISABLED,
            CMD_TEST_AUX | CMD_TEST_KBD => return self.push(&[0x00]),
            CMD_SELF_TEST => return self.push(&[0x55]),
            CMD_DISABLE_KBD => self.ctr |= CB_KBD_DISABLED,
            CMD_ENABLE_KBD => self.ctr &= !CB_KBD_DISABLED,
            // Bit 0 (reset line high: running) and bit 1 (A20 enabled).
            CMD_READ_OUTPORT => return self.push(&[0x03]),
            CMD_WRITE_OUTPORT => self.pending = Pending::WriteOutport,
            CMD_WRITE_KBD_OUT => self.pending = Pending::WriteKbdOut,
            CMD_WRITE_AUX => self.pending = Pending::WriteAux,
            CMD_RESET_CPU => return I8042Action::Reset,
            _ => {}
        }
        I8042Action::None
    }

    fn data(&mut self, value: u8) -> I8042Action {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::WriteCtr => {
                self.ctr = value;
                self.interrupt_if_waiting()
            }
            // Output-port bit 0 is the CPU reset line, active low.
            Pending::WriteOutport if value & 0x01 == 0 => I8042Action::Reset,
            Pending::WriteOutport => I8042Action::None,
            Pending::WriteKbdOut => self.push(&[value]),
            Pending::WriteAux => self.mouse_command(value),
            Pending::KeyboardArgument(0xf0) if value == 0 => self.push(&[KBD_ACK, 0x02]),
            Pending::KeyboardArgument(_) => self.push(&[KBD_ACK]),
            Pending::None => self.keyboard_command(value),
        }
    }

    fn keyboard_command(&mut self, cmd: u8) -> I8042Action {
        match cmd {
            0xff => self.push(&[KBD_ACK, KBD_BAT_OK]), // reset and self-test
            0xf2 => self.push(&[KBD_ACK, 0xab, 0x83]), // identify: MF2 keyboard
            0xee => self.push(&[KBD_ECHO]),
            0xed | 0xf0 | 0xf3 => {
                self.pending = Pending::KeyboardArgument(cmd);
                self.push(&[KBD_ACK])
            }
            _ => self.push(&[KBD_ACK]), // enable, disable, set defaults, ...
        }
    }

    fn mouse_command(&mut self, cmd: u8) -> I8042Action {
        if self.mouse.argument {
            self.mouse.argument = false;
            return self.push_aux(&[KBD_ACK]);
        }
        match cmd {
            0xff => {
                self.mouse = Mouse::default();
                self.push_aux(&[KBD_ACK, KBD_BAT_OK, 0x00]) // reset: self-test passed, id 0
            }
            0xf2 => self.push_aux(&[KBD_ACK, 0x00]), // identify: a plain PS/2 mouse
            0xf4 => {
                self.mouse.reporting = true;
                self.push_aux(&[KBD_ACK])
            }
            0xf5 | 0xf6 => {
                self.mouse.reporting = false;
                self.push_aux(&[KBD_ACK])
            }
            0xe9 => self.push_aux(&[KBD_ACK, u8::from(self.mouse.reporting) << 5, 0x02, 100]),
            0xf3 | 0xe8 => {
                self.mouse.argument = true;
                self.push_aux(&[KBD_ACK])
            }
            _ => self.push_aux(&[KBD_ACK]), // stream mode, scaling, ...
        }
    }

    /// Queues mouse movement (`dx` right, `dy` down, in pixels) with the buttons held, as
    /// PS/2 packets of at most 255 each way; dropped unless the guest enabled reporting.
    pub fn inject_pointer(&mut self, mut dx: i32, mut dy: i32, buttons: u8) -> I8042Action {
        if !self.mouse.reporting || self.ctr & CB_AUX_DISABLED != 0 {
            return I8042Action::None;
        }
        let mut action = I8042Action::None;
        loop {
            let (sx, sy) = (dx.clamp(-255, 255), dy.clamp(-255, 255));
            // PS/2 counts y upwards.
            let up = -sy;
            let mut head = 0x08 | (buttons & 0x07);
            if sx < 0 {
                head |= 0x10;
            }
            if up < 0 {
                head |= 0x20;
            }
            if self.push_aux(&[head, sx as u8, up as u8]) == I8042Action::AuxInterrupt {
                action = I8042Action::AuxInterrupt;
            }
            dx -= sx;
            dy -= sy;
            if dx == 0 && dy == 0 {
                return action;
            }
        }
    }

    /// Queues Ctrl+Alt+Del (press, then release), in scancode set 1 if the guest translates,
    /// else set 2. Returns whether to raise the keyboard interrupt.
    pub fn inject_ctrl_alt_del(&mut self) -> I8042Action {
        let keys: Vec<Key> = [0xffe3, 0xffe9, 0xffff]
            .into_iter()
            .filter_map(key_for_keysym)
            .collect();
        let mut action = I8042Action::None;
        for (key, down) in keys
            .iter()
            .map(|&k| (k, true))
            .chain(keys.iter().rev().map(|&k| (k, false)))
        {
            if self.inject_key(key, down) == I8042Action::Interrupt {
                action = I8042Action::Interrupt;
            }
        }
        action
    }

    /// Queues a key press or release, as the keyboard would send it.
    pub fn inject_key(&mut self, key: Key, down: bool) -> I8042Action {
        if self.ctr & CB_KBD_DISABLED != 0 {
            return I8042Action::None;
        }
        self.push(&scancode_bytes(key, down, self.ctr & CB_TRANSLATE != 0))
    }

    fn push(&mut self, bytes: &[u8]) -> I8042Action {
        self.push_from(bytes, false)
    }

    fn push_aux(&mut self, bytes: &[u8]) -> I8042Action {
        self.push_from(bytes, true)
    }

    fn push_from(&mut self, bytes: &[u8], aux: bool) -> I8042Action {
        let was_empty = self.output.is_empty();
        for &b in bytes {
            if self.output.len() < OUTPUT_CAPACITY {
                self.output.push_back((b, aux));
            }
        }
        if was_empty {
            self.interrupt_if_waiting()
        } else {
            I8042Action::None
        }
    }

    /// The interrupt for the byte now at the head of the buffer, if its source's is enabled.
    fn interrupt_if_waiting(&self) -> I8042Action {
        match self.output.front() {
            Some((_, false)) if self.ctr & CB_KBD_INT != 0 => I8042Action::Interrupt,
            Some((_, true)) if self.ctr & CB_AUX_INT != 0 => I8042Action::AuxInterrupt,
            _ => I8042Action::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(dev: &mut I8042) -> Vec<u8> {
        let mut out = Vec::new();
        while dev.read(I8042_COMMAND).0 & SB_OUT_FULL != 0 {
            out.push(dev.read(I8042_DATA).0);
        }
        out
    }

    #[test]
    fn reset_by_command_fe_or_by_output_port_bit_0() {
        let mut dev = I8042::default();
        assert_eq!(dev.write(0x64, 0xfe), I8042Action::Reset);
        assert_eq!(dev.write(0x64, 0xd1), I8042Action::None);
        assert_eq!(dev.write(0x60, 0xfe), I8042Action::Reset);
        assert_eq!(dev.write(0x64, 0xd1), I8042Action::None);
        assert_eq!(
            dev.write(0x60, 0x03),
            I8042Action::None,
            "reset line kept high"
        );
    }

    #[test]
    fn answers_a_linux_style_probe() {
        let mut dev = I8042::default();
        assert_eq!(dev.write(0x64, CMD_SELF_TEST), I8042Action::Interrupt);
        assert_eq!(drain(&mut dev), [0x55]);
        dev.write(0x64, CMD_READ_CTR);
        assert_eq!(drain(&mut dev), [CB_KBD_INT | CB_SYSTEM_FLAG]);
        dev.write(0x64, CMD_WRITE_CTR);
        dev.write(0x60, CB_SYSTEM_FLAG); // interrupts off
        assert_eq!(
            dev.write(0x64, CMD_TEST_KBD),
            I8042Action::None,
            "no interrupt while disabled"
        );
        assert_eq!(drain(&mut dev), [0x00]);
        dev.write(0x60, 0xff);
        assert_eq!(drain(&mut dev), [KBD_ACK, KBD_BAT_OK]);
        dev.write(0x60, 0xf2);
        assert_eq!(drain(&mut dev), [KBD_ACK, 0xab, 0x83]);
        dev.write(0x60, 0xf0);
        dev.write(0x60, 0x00);
        assert_eq!(
            drain(&mut dev),
            [KBD_ACK, KBD_ACK, 0x02],
            "current scancode set: 2"
        );
        dev.write(0x60, 0xed);
        dev.write(0x60, 0x07);
        assert_eq!(drain(&mut dev), [KBD_ACK, KBD_ACK]);
        // The mouse answers through the auxiliary port.
        dev.write(0x64, CMD_WRITE_AUX);
        dev.write(0x60, 0xff);
        assert_ne!(dev.read(0x64).0 & SB_AUX_DATA, 0, "a mouse byte is marked");
        assert_eq!(drain(&mut dev), [KBD_ACK, KBD_BAT_OK, 0x00]);
    }

    #[test]
    fn mouse_reports_movement_once_enabled() {
        let mut dev = I8042::default();
        assert_eq!(
            dev.inject_pointer(5, 5, 0),
            I8042Action::None,
            "not reporting yet"
        );
        dev.write(0x64, CMD_WRITE_CTR);
        dev.write(0x60, CB_KBD_INT | CB_AUX_INT | CB_SYSTEM_FLAG);
        dev.write(0x64, CMD_WRITE_AUX);
        assert_eq!(dev.write(0x60, 0xf4), I8042Action::AuxInterrupt);
        assert_eq!(drain(&mut dev), [KBD_ACK]);
        // Right 10, down 3, left button: y counts up in PS/2.
        assert_eq!(dev.inject_pointer(10, 3, 1), I8042Action::AuxInterrupt);
        assert_eq!(drain(&mut dev), [0x08 | 0x20 | 1, 10, (-3i8) as u8]);
        // Long moves are split into packets of at most 255.
        dev.inject_pointer(-300, 0, 0);
        assert_eq!(
            drain(&mut dev),
            [0x18, (-255i16) as u8, 0, 0x18, (-45i8) as u8, 0]
        );
        // An argument byte is acknowledged, not taken for a command.
        dev.write(0x64, CMD_WRITE_AUX);
        dev.write(0x60, 0xf3);
        dev.write(0x64, CMD_WRITE_AUX);
        dev.write(0x60, 0xf5);
        assert_eq!(drain(&mut dev), [KBD_ACK, KBD_ACK]);
        assert_eq!(
            dev.inject_pointer(1, 1, 0),
            I8042Action::AuxInterrupt,
            "0xF5 was the sample rate, not disable"
        );
    }

    #[test]
    fn ctrl_alt_del_in_set_2_or_translated_set_1() {
        let mut dev = I8042::default();
        assert_eq!(dev.inject_ctrl_alt_del(), I8042Action::Interrupt);
        assert_eq!(
            drain(&mut dev),
            [
                0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14
            ]
        );
        dev.write(0x64, CMD_WRITE_CTR);
        dev.write(0x60, CB_KBD_INT | CB_SYSTEM_FLAG | CB_TRANSLATE);
        dev.inject_ctrl_alt_del();
        assert_eq!(
            drain(&mut dev),
            [0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d]
        );
    }

    #[test]
    fn each_waiting_byte_raises_an_interrupt_and_overflow_is_bounded() {
        let mut dev = I8042::default();
        dev.inject_ctrl_alt_del();
        assert_eq!(dev.read(0x60), (0x14, I8042Action::Interrupt));
        for _ in 0..100 {
            dev.inject_ctrl_alt_del();
        }
        assert_eq!(drain(&mut dev).len(), OUTPUT_CAPACITY);
        assert_eq!(
            dev.read(0x60),
            (0, I8042Action::None),
            "empty buffer reads 0"
        );
    }
}
