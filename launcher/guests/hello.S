/* hello: prints a line on COM1, then powers off. */
#include "common.S"
    PVH_NOTE _start
    .section .text.entry, "ax"
    .code32
    .globl _start
_start:
    mov $msg, %esi
next:
    lodsb
    test %al, %al
    jz done
    PUTC_BODY
    jmp next
done:
    mov $PM_SLEEP_CTL, %dx
    mov $SLP_S5_EN, %al
    out %al, %dx
    hlt
    jmp done
msg:
    .asciz "Hello from a Verdant test guest\n"
