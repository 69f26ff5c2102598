//! COM1: a 16550 UART (vm-superio) whose output goes to the launcher's stdout, so `kubectl logs`
//! shows the guest console, and to a bounded ring buffer served on `/console`.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// COM1's first I/O port.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1's port count.
pub const COM1_LEN: u16 = 8;
/// COM1's legacy IRQ line.
pub const COM1_IRQ: u32 = 4;

/// The last bytes the guest wrote to its console, shared with the HTTP endpoint.
#[derive(Debug, Clone)]
pub struct ConsoleBuffer {
    inner: Arc<Mutex<VecDeque<u8>>>,
    capacity: usize,
}

impl ConsoleBuffer {
    /// An empty buffer that keeps the last `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(capacity.min(1 << 16)))),
            capacity,
        }
    }

    /// Appends bytes, dropping the oldest past the capacity.
    pub fn push(&self, bytes: &[u8]) {
        let mut buf = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for &b in bytes {
            if buf.len() == self.capacity {
                buf.pop_front();
            }
            buf.push_back(b);
        }
    }

    /// A copy of what the buffer holds.
    pub fn snapshot(&self) -> Vec<u8> {
        let buf = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        buf.iter().copied().collect()
    }
}

/// Where console output goes: stdout (unless quiet) and the ring buffer.
pub struct ConsoleSink {
    buffer: ConsoleBuffer,
    stdout: bool,
}

impl ConsoleSink {
    /// A sink writing to `buffer`, and to stdout when `stdout` is set.
    pub fn new(buffer: ConsoleBuffer, stdout: bool) -> Self {
        Self { buffer, stdout }
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.push(data);
        if self.stdout {
            // The console is best effort: a closed stdout must not stop the guest.
            let _ = std::io::stdout().write_all(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.stdout {
            let _ = std::io::stdout().flush();
        }
        Ok(())
    }
}

/// Raises the UART's interrupt through an irqfd registered with KVM.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The COM1 device.
pub type SerialDevice = Serial<IrqTrigger, vm_superio::serial::NoEvents, ConsoleSink>;

/// Creates COM1 writing to `sink` and signalling `irq`.
pub fn new_com1(irq: EventFd, sink: ConsoleSink) -> SerialDevice {
    Serial::new(IrqTrigger(irq), sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_keeps_the_newest_bytes() {
        let buf = ConsoleBuffer::new(4);
        buf.push(b"abc");
        buf.push(b"def");
        assert_eq!(buf.snapshot(), b"cdef");
    }

    #[test]
    fn uart_writes_reach_the_buffer() {
        let buf = ConsoleBuffer::new(64);
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut com1 = new_com1(irq, ConsoleSink::new(buf.clone(), false));
        for &b in b"hi\n" {
            com1.write(0, b).unwrap();
        }
        assert_eq!(buf.snapshot(), b"hi\n");
        // Line status: transmitter empty, so polling guests go on writing.
        assert_ne!(com1.read(5) & 0x20, 0);
    }
}
