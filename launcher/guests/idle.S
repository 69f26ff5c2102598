/* idle: prints "ready", then halts with interrupts off for good: the VMM idles with the guest
 * loaded, which is when the benchmark reads its memory use. */
#include "common.S"
    PVH_ENTRY
    mov $msg, %esi
1:  lodsb
    test %al, %al
    jz 3f
    PUTC_BODY_AT 2
    jmp 1b
3:  cli
    hlt
    jmp 3b
msg:
    .asciz "ready\n"
