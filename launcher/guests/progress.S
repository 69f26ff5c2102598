/* progress: reports boot-progress codes on port 0x80 (0x40 kernel, 0x60 first userspace step),
 * prints, then powers off. */
#include "common.S"
    PVH_ENTRY
    mov $stack_top, %esp
    mov $BOOT_PROGRESS, %dx
    mov $0x40, %al
    out %al, %dx
    mov $0x60, %al
    out %al, %dx
    mov $msg, %esi
    call print
    POWER_OFF
msg:
    .asciz "userspace reached\n"
#include "print.S"
    .section .bss
    .space 256
stack_top:
