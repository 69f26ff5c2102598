//! Enough of the i8042 keyboard controller for a guest to reset the machine (command 0xFE on
//! port 0x64, what Linux's `reboot=k` does). The keyboard itself comes with the display work.

/// The data port.
pub const I8042_DATA: u16 = 0x60;
/// The command/status port.
pub const I8042_COMMAND: u16 = 0x64;
/// "Pulse output line 0": resets the CPU.
const CMD_RESET_CPU: u8 = 0xfe;

/// What a guest write asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I8042Action {
    /// Nothing the VMM must act on.
    None,
    /// The guest asked for a reset.
    Reset,
}

/// The controller's state: nothing yet but a status register that never reports data.
#[derive(Debug, Default)]
pub struct I8042;

impl I8042 {
    /// A port read: no keyboard data, controller ready.
    pub fn read(&mut self, _port: u16) -> u8 {
        0
    }

    /// A port write.
    pub fn write(&mut self, port: u16, value: u8) -> I8042Action {
        if port == I8042_COMMAND && value == CMD_RESET_CPU {
            I8042Action::Reset
        } else {
            I8042Action::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_command_fe_on_port_64_resets() {
        let mut dev = I8042;
        assert_eq!(dev.write(0x64, 0xfe), I8042Action::Reset);
        assert_eq!(dev.write(0x60, 0xfe), I8042Action::None);
        assert_eq!(dev.write(0x64, 0xad), I8042Action::None);
        assert_eq!(dev.read(0x64), 0);
    }
}
