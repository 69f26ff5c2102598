/* hello64: no PVH note, so the VMM boots it like a 64-bit Linux kernel: long mode, identity
 * page tables, %rsi pointing at the zero page. Prints the zero page's boot-protocol magic check
 * result, then powers off. */
#include "common.S"
    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    /* The setup header's "HdrS" magic sits at offset 0x202 of the zero page. */
    cmpl $0x53726448, 0x202(%rsi)
    jne bad
    lea msg(%rip), %rsi
    jmp out
bad:
    lea badmsg(%rip), %rsi
out:
    lodsb
    test %al, %al
    jz done
    PUTC_BODY
    jmp out
done:
    POWER_OFF
msg:
    .asciz "Hello from 64-bit mode\n"
badmsg:
    .asciz "zero page missing\n"
