/* reset: says so, then asks the i8042 controller to pulse the reset line. */
#include "common.S"
    PVH_ENTRY
    mov $stack_top, %esp
    mov $msg, %esi
    call print
    mov $I8042_CMD, %dx
    mov $I8042_RESET, %al
    out %al, %dx
1:  hlt
    jmp 1b
msg:
    .asciz "resetting\n"
#include "print.S"
    .section .bss
    .space 256
stack_top:
