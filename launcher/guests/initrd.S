/* initrd: prints the initrd the VMM listed in hvm_start_info (a text file in the tests), then
 * the command line, then powers off: proves module list, initrd placement and command line. */
#include "common.S"
    PVH_ENTRY
    mov $stack_top, %esp
    cmpl $0, 12(%ebx)           /* nr_modules */
    je no_initrd
    mov 16(%ebx), %edi          /* modlist_paddr */
    mov 0(%edi), %esi           /* hvm_modlist_entry.paddr */
    mov 8(%edi), %ecx           /* .size */
1:  test %ecx, %ecx
    jz cmdline
    lodsb
    PUTC_BODY_AT 2
    dec %ecx
    jmp 1b
no_initrd:
    mov $none, %esi
    call print
cmdline:
    mov 24(%ebx), %esi          /* cmdline_paddr */
    call print
    mov $newline, %esi
    call print
    POWER_OFF
none:    .asciz "no initrd\n"
newline: .asciz "\n"
#include "print.S"
    .section .bss
    .space 256
stack_top:
