/* poweroff: powers off at once, saying nothing. */
#include "common.S"
    PVH_NOTE _start
    .section .text.entry, "ax"
    .code32
    .globl _start
_start:
    mov $PM_SLEEP_CTL, %dx
    mov $SLP_S5_EN, %al
    out %al, %dx
1:  hlt
    jmp 1b
