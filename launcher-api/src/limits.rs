//! What the launcher accepts, and what it costs beyond the guest. The CRD's bounds lie inside
//! these (a test in the operator proves it), so every Desktop the apiserver admits runs.

/// Fewest vCPUs.
pub const MIN_CPUS: u32 = 1;
/// Most vCPUs a VM may have.
pub const MAX_CPUS: u32 = 64;
/// Least guest memory: the kernel loads at 1 MiB and needs room above it.
pub const MIN_MEMORY: u64 = 2 << 20;
/// Most guest memory.
pub const MAX_MEMORY: u64 = 1 << 40;
/// Guest memory is rounded up to a multiple of this.
pub const MEMORY_GRANULE: u64 = 2 << 20;
/// Longest kernel command line, NUL included (x86's `COMMAND_LINE_SIZE`): the text itself
/// is at most one byte shorter.
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Smallest display width and height, in pixels.
pub const MIN_DISPLAY_SIDE: u32 = 16;
/// Widest display, in pixels (8K).
pub const MAX_DISPLAY_WIDTH: u32 = 7680;
/// Tallest display, in pixels (8K).
pub const MAX_DISPLAY_HEIGHT: u32 = 4320;
/// Frames per second a VNC viewer gets unless configured otherwise.
pub const DEFAULT_MAX_FPS: u32 = 30;
/// Most frames per second a VNC viewer may be configured to get.
pub const MAX_FPS: u32 = 60;
/// Seconds the guest gets to shut down after SIGTERM, unless configured otherwise.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 20;
/// The longest shutdown grace period accepted.
pub const MAX_SHUTDOWN_GRACE_SECONDS: u64 = 3600;
/// How much longer than the guest's shutdown grace the pod's `terminationGracePeriodSeconds`
/// is: time for the launcher to stop the VM hard and exit before the kubelet kills it.
pub const TERMINATION_GRACE_MARGIN_SECONDS: u64 = 10;

/// Memory the launcher process needs on top of guest RAM: the VMM itself measures about 3 MiB;
/// the rest is headroom for page tables, I/O buffers and the display server, so that the
/// kubelet never OOM-kills a desktop for its VMM.
pub const MEMORY_OVERHEAD: u64 = 64 << 20;
/// CPU the launcher needs on top of the vCPUs, in millicores (device and HTTP threads).
pub const CPU_OVERHEAD_MILLIS: u64 = 100;
