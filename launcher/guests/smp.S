/* smp: the boot vCPU starts the others the way Linux does (INIT, then SIPI to a real-mode
 * trampoline at 0x8000, through the in-kernel local APIC); every vCPU prints "cpu <APIC id> up"
 * under a spin lock; once the number of vCPUs given on the command line have reported, the boot
 * vCPU prints "all <n> cpus up" and powers off. */
#include "common.S"
#define LAPIC_ID        0xfee00020
#define LAPIC_ICR_LOW   0xfee00300
#define LAPIC_ICR_HIGH  0xfee00310
#define TRAMPOLINE      0x8000

    PVH_ENTRY
    mov $bsp_stack_top, %esp
    /* The command line (hvm_start_info.cmdline_paddr, offset 24) holds the vCPU count. */
    mov 24(%ebx), %esi
    xor %ecx, %ecx
parse:
    movzbl (%esi), %eax
    sub $'0', %eax
    cmp $9, %eax
    ja parsed
    imul $10, %ecx, %ecx
    add %eax, %ecx
    inc %esi
    jmp parse
parsed:
    mov %ecx, ncpus
    call report

    /* Copy the trampoline below 1 MiB, where a SIPI can start a vCPU. */
    mov $tramp_start, %esi
    mov $TRAMPOLINE, %edi
    mov $(tramp_end - tramp_start), %ecx
    rep movsb

    movl $0, LAPIC_ICR_HIGH
    movl $0x000c4500, LAPIC_ICR_LOW     /* INIT, all excluding self */
    movl $0x000c4600 + (TRAMPOLINE >> 12), LAPIC_ICR_LOW  /* SIPI */

wait_all:
    mov arrived, %eax
    cmp ncpus, %eax
    jb wait_all

    call take_lock
    mov $all_msg, %esi
    call print
    mov ncpus, %eax
    call print_number
    mov $cpus_msg, %esi
    call print
    POWER_OFF

/* report: prints "cpu <APIC id> up" and counts this vCPU as arrived. */
report:
    call take_lock
    mov $cpu_msg, %esi
    call print
    mov LAPIC_ID, %eax
    shr $24, %eax
    call print_number
    mov $up_msg, %esi
    call print
    lock incl arrived
    movl $0, lock
    ret

take_lock:
    mov $1, %eax
1:  xchg %eax, lock
    test %eax, %eax
    jnz 1b
    ret

/* print_number: prints %eax (below 100) in decimal. */
print_number:
    xor %edx, %edx
    mov $10, %ecx
    div %ecx
    push %edx
    test %eax, %eax
    jz 3f
    add $'0', %al
    PUTC_BODY
3:  pop %eax
    add $'0', %al
    PUTC_BODY
    ret

/* Application processors start here, in real mode at TRAMPOLINE, and switch to 32-bit mode. */
    .code16
tramp_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    lgdtl TRAMPOLINE + (tramp_gdt_desc - tramp_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $ap_entry
    .p2align 3
tramp_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff    /* 0x08: flat 32-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: flat 32-bit data */
tramp_gdt_desc:
    .word tramp_gdt_desc - tramp_gdt - 1
    .long TRAMPOLINE + (tramp_gdt - tramp_start)
tramp_end:

    .code32
ap_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    /* A 256-byte stack per APIC id. */
    mov LAPIC_ID, %eax
    shr $24, %eax
    inc %eax
    shl $8, %eax
    add $ap_stacks, %eax
    mov %eax, %esp
    call report
2:  cli
    hlt
    jmp 2b

cpu_msg:  .asciz "cpu "
up_msg:   .asciz " up\n"
all_msg:  .asciz "all "
cpus_msg: .asciz " cpus up\n"
#include "print.S"

    .section .data
    .p2align 2
lock:    .long 0
arrived: .long 0
ncpus:   .long 0
    .section .bss
    .p2align 4
    .space 512
bsp_stack_top:
ap_stacks:
    .space 256 * 65
