/* initrd64: the same through the 64-bit Linux boot protocol: reads the initrd's place from the
 * zero page (ramdisk_image at 0x218, ramdisk_size at 0x21C) and the command line from
 * cmd_line_ptr (0x228), prints both, then powers off. */
#include "common.S"
    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    mov %rsi, %rbx
    mov 0x218(%rbx), %esi       /* ramdisk_image (zero-extended) */
    mov 0x21c(%rbx), %ecx       /* ramdisk_size */
1:  test %ecx, %ecx
    jz 3f
    lodsb
    PUTC_BODY_AT 2
    dec %ecx
    jmp 1b
3:  mov 0x228(%rbx), %esi       /* cmd_line_ptr */
4:  lodsb
    test %al, %al
    jz 5f
    PUTC_BODY_AT 6
    jmp 4b
5:  mov $'\n', %al
    PUTC_BODY_AT 7
    POWER_OFF
