/* crash: loads an empty IDT and executes ud2, so #UD escalates to a triple fault (a KVM
 * shutdown exit) that the VMM must report with the registers, not panic on. */
#include "common.S"
    PVH_ENTRY
    mov $stack_top, %esp
    mov $msg, %esi
    call print
    lidt idt_desc
    mov $0xc0ffee, %eax
    ud2
msg:
    .asciz "crashing\n"
idt_desc:
    .word 0
    .long 0
#include "print.S"
    .section .bss
    .space 256
stack_top:
