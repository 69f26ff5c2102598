/* print: a subroutine that sends the NUL-terminated string at %esi to COM1. Clobbers %eax, %edx, %esi. */
    .section .text, "ax"
    .code32
    .globl print
print:
    lodsb
    test %al, %al
    jz 2f
    PUTC_BODY
    jmp print
2:  ret
