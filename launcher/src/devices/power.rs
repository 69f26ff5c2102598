//! The power-off port: an ACPI sleep-control register (as Cloud Hypervisor places it, at
//! I/O port 0x600). Writing SLP_EN with sleep type S5 powers the machine off. The ACPI tables
//! that point stock kernels at it come with the ACPI work; test guests write it directly.

/// The sleep control register's port.
pub const SLEEP_CONTROL_PORT: u16 = 0x600;
/// SLP_EN, bit 5.
const SLP_EN: u8 = 1 << 5;
/// SLP_TYP field, bits 2-4.
const SLP_TYP_MASK: u8 = 0x7 << 2;
/// The S5 (soft off) sleep type.
const SLP_TYP_S5: u8 = 5 << 2;

/// Whether a write to the sleep control register asks for power-off.
pub fn is_power_off(value: u8) -> bool {
    value & SLP_EN != 0 && value & SLP_TYP_MASK == SLP_TYP_S5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_with_slp_en_powers_off_and_nothing_else_does() {
        assert!(is_power_off((5 << 2) | (1 << 5)));
        assert!(!is_power_off(5 << 2), "no SLP_EN");
        assert!(!is_power_off((3 << 2) | (1 << 5)), "S3 is not off");
        assert!(!is_power_off(0));
    }
}
