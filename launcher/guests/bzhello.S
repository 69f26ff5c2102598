/* bzhello: a minimal bzImage (boot.rst "The real-mode kernel header"): one boot sector holding
 * the setup header, one setup sector, then a protected-mode kernel whose 64-bit entry point
 * (startup_64) sits 0x200 bytes in. The VMM loads it like a distro bzImage and enters it in long
 * mode with %rsi at the zero page. Linked with --oformat binary at address 0. */
#include "common.S"
    .section .text.entry, "ax"
    .code64
boot_sector:
    .org 0x1f1
setup_sects:    .byte 1             /* 0x1F1 */
root_flags:     .word 0             /* 0x1F2 */
syssize:        .long (kernel_end - kernel_start + 15) / 16 /* 0x1F4 */
ram_size:       .word 0             /* 0x1F8 */
vid_mode:       .word 0             /* 0x1FA */
root_dev:       .word 0             /* 0x1FC */
boot_flag:      .word 0xaa55        /* 0x1FE */
jump:           .word 0             /* 0x200 */
header:         .ascii "HdrS"       /* 0x202 */
version:        .word 0x020f        /* 0x206 */
realmode_swtch: .long 0             /* 0x208 */
start_sys_seg:  .word 0             /* 0x20C */
kernel_version: .word 0             /* 0x20E */
type_of_loader: .byte 0             /* 0x210 */
loadflags:      .byte 0x01          /* 0x211: LOADED_HIGH */
setup_move_size: .word 0            /* 0x212 */
code32_start:   .long 0x100000      /* 0x214 */
ramdisk_image:  .long 0             /* 0x218 */
ramdisk_size:   .long 0             /* 0x21C */
bootsect_kludge: .long 0            /* 0x220 */
heap_end_ptr:   .word 0             /* 0x224 */
ext_loader_ver: .byte 0             /* 0x226 */
ext_loader_type: .byte 0            /* 0x227 */
cmd_line_ptr:   .long 0             /* 0x228 */
initrd_addr_max: .long 0x37ffffff   /* 0x22C */
    .org 512 * 2                    /* boot sector + setup_sects setup sectors */

kernel_start:                       /* loaded at code32_start (1 MiB) */
    .org kernel_start + 0x200       /* startup_64 */
startup_64:
    cmpl $0x53726448, 0x202(%rsi)   /* the zero page's copy of "HdrS" */
    jne 2f
    lea msg(%rip), %rsi
1:  lodsb
    test %al, %al
    jz 3f
    PUTC_BODY_AT 4
    jmp 1b
2:  hlt
    jmp 2b
3:  POWER_OFF
msg:
    .asciz "Hello from a bzImage\n"
kernel_end:
