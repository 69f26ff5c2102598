/* badmmio: writes to an address where no device lives (the VMM logs it and carries on), then
 * jumps there to execute, which no VMM can do: the error path with registers. */
#include "common.S"
    PVH_ENTRY
    mov $stack_top, %esp
    movl $0x1234, 0xd0000000
    mov $msg, %esi
    call print
    mov $0xd0000000, %eax
    jmp *%eax
msg:
    .asciz "survived a stray MMIO write\n"
#include "print.S"
    .section .bss
    .space 256
stack_top:
