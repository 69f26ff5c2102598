//! The boot-progress port (0x80, the PC's POST-code port): a guest writes a code at each boot
//! step and the VMM stamps it with the time since the VM started. Codes follow Cloud
//! Hypervisor's debug-port ranges: 0x00-0x1f firmware, 0x20-0x3f boot loader, 0x40-0x5f kernel,
//! 0x60-0x7f userspace. The first userspace code marks "the guest reached userspace".
//!
//! Linux writes port 0x80 for I/O delays unless booted with `io_delay=none`; each code is kept
//! once and the list is bounded, so that noise cannot grow without end.

use std::time::{Duration, Instant};

/// The port.
pub const BOOT_PROGRESS_PORT: u16 = 0x80;
/// Most distinct codes kept.
const MAX_EVENTS: usize = 64;

/// One recorded step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressEvent {
    /// The code the guest wrote.
    pub code: u8,
    /// Time since the VM started.
    pub at: Duration,
}

/// The boot-progress recorder.
#[derive(Debug)]
pub struct BootProgress {
    start: Instant,
    events: Vec<ProgressEvent>,
}

impl BootProgress {
    /// A recorder whose clock starts at `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            events: Vec::new(),
        }
    }

    /// Records `code` (the first time it is seen); returns the event when it is the first
    /// userspace code.
    pub fn record(&mut self, code: u8, now: Instant) -> Option<ProgressEvent> {
        if self.events.len() >= MAX_EVENTS || self.events.iter().any(|e| e.code == code) {
            return None;
        }
        let first_userspace = is_userspace(code) && self.userspace().is_none();
        let event = ProgressEvent {
            code,
            at: now.saturating_duration_since(self.start),
        };
        self.events.push(event);
        first_userspace.then_some(event)
    }

    /// When the guest first reported a userspace step.
    pub fn userspace(&self) -> Option<ProgressEvent> {
        self.events.iter().copied().find(|e| is_userspace(e.code))
    }

    /// Every recorded step, in order.
    pub fn events(&self) -> &[ProgressEvent] {
        &self.events
    }
}

fn is_userspace(code: u8) -> bool {
    (0x60..=0x7f).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_userspace_code_is_reported_once() {
        let t0 = Instant::now();
        let mut p = BootProgress::new(t0);
        assert_eq!(p.record(0x40, t0 + Duration::from_millis(5)), None);
        let first = p
            .record(0x60, t0 + Duration::from_millis(9))
            .expect("userspace");
        assert_eq!((first.code, first.at), (0x60, Duration::from_millis(9)));
        assert_eq!(p.record(0x61, t0 + Duration::from_millis(12)), None);
        assert_eq!(p.userspace(), Some(first));
        assert_eq!(p.events().len(), 3);
    }

    #[test]
    fn repeated_and_excess_codes_are_bounded() {
        let t0 = Instant::now();
        let mut p = BootProgress::new(t0);
        for _ in 0..1000 {
            for code in 0..=255u8 {
                p.record(code, t0);
            }
        }
        assert_eq!(p.events().len(), 64);
    }
}
