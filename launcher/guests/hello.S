/* hello: prints a line on COM1, then powers off. */
#include "common.S"
    PVH_ENTRY
    mov $msg, %esi
next:
    lodsb
    test %al, %al
    jz done
    PUTC_BODY
    jmp next
done:
    POWER_OFF
msg:
    .asciz "Hello from a Verdant test guest\n"
