/* Shared pieces of the test guests: PVH note, COM1 output, power control.
 * Only plain integer instructions: the emulated KVM on our CI machines lacks SSE3+ and XSAVE. */

#define COM1            0x3f8
#define COM1_LSR        0x3fd
#define LSR_THRE        0x20
#define BOOT_PROGRESS   0x80
#define PM_SLEEP_CTL    0x600
#define SLP_S5_EN       ((5 << 2) | (1 << 5))
#define I8042_CMD       0x64
#define I8042_RESET     0xfe

/* PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18): the VMM enters _start in 32-bit protected
 * mode, paging off, with %ebx pointing at hvm_start_info. */
.macro PVH_NOTE entry
    .pushsection .note.Xen, "a", @note
    .p2align 2
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .p2align 2
    .long \entry
    .popsection
.endm

/* PVH_ENTRY: the PVH note, then _start in 32-bit code, the entry point of a PVH guest. */
.macro PVH_ENTRY
    PVH_NOTE _start
    .section .text.entry, "ax"
    .code32
    .globl _start
_start:
.endm

/* POWER_OFF: S5 with SLP_EN on the sleep-control port, then halt should the VMM ignore it. */
.macro POWER_OFF
    mov $PM_SLEEP_CTL, %dx
    mov $SLP_S5_EN, %al
    out %al, %dx
    cli
    hlt
.endm

/* putc: send %al to COM1 once the transmitter holds nothing. Clobbers %ah and %dx; needs no
 * stack, so it works in every mode. It defines local label 1, so callers jump to other
 * numbers across it. */
.macro PUTC_BODY
    mov %al, %ah
1:  mov $COM1_LSR, %dx
    in %dx, %al
    test $LSR_THRE, %al
    jz 1b
    mov %ah, %al
    mov $COM1, %dx
    out %al, %dx
.endm

/* The same, with the poll loop on local label \label, for callers that use 1 themselves. */
.macro PUTC_BODY_AT label
    mov %al, %ah
\label:
    mov $COM1_LSR, %dx
    in %dx, %al
    test $LSR_THRE, %al
    jz \label\()b
    mov %ah, %al
    mov $COM1, %dx
    out %al, %dx
.endm
