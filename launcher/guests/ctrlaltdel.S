/* ctrlaltdel: sets up the legacy PIC and an IDT, unmasks only the keyboard (IRQ1), and waits
 * with interrupts on. Its keyboard handler watches the scancode set 2 stream for Ctrl, Alt and
 * Del pressed, then prints "ctrl-alt-del" and powers off: what the launcher's SIGTERM asks for. */
#include "common.S"
#define PIC1_CMD    0x20
#define PIC1_DATA   0x21
#define PIC2_CMD    0xa0
#define PIC2_DATA   0xa1
#define KBD_VECTOR  0x21

    PVH_ENTRY
    mov $stack_top, %esp
    /* The interrupt gate for the keyboard vector: handler, selector 0x08, present 32-bit. */
    mov $kbd_isr, %eax
    mov %ax, idt + KBD_VECTOR * 8
    movw $0x08, idt + KBD_VECTOR * 8 + 2
    movw $0x8e00, idt + KBD_VECTOR * 8 + 4
    shr $16, %eax
    mov %ax, idt + KBD_VECTOR * 8 + 6
    lidt idt_desc
    /* Remap the PICs to vectors 0x20 and 0x28 (ICW1-ICW4), then mask all but IRQ1. */
    mov $0x11, %al
    out %al, $PIC1_CMD
    out %al, $PIC2_CMD
    mov $0x20, %al
    out %al, $PIC1_DATA
    mov $0x28, %al
    out %al, $PIC2_DATA
    mov $0x04, %al
    out %al, $PIC1_DATA
    mov $0x02, %al
    out %al, $PIC2_DATA
    mov $0x01, %al
    out %al, $PIC1_DATA
    out %al, $PIC2_DATA
    mov $0xfd, %al
    out %al, $PIC1_DATA
    mov $0xff, %al
    out %al, $PIC2_DATA
    mov $waiting, %esi
    call print
    sti
idle:
    hlt
    jmp idle

kbd_isr:
    pusha
next_byte:
    in $0x64, %al
    test $1, %al
    jz done
    in $0x60, %al
    mov prev, %bl
    mov %al, prev
    cmp $0xf0, %bl              /* a release: not a press */
    je next_byte
    cmp $0x14, %al
    jne 5f
    orb $1, keys                /* Ctrl */
5:  cmp $0x11, %al
    jne 6f
    orb $2, keys                /* Alt */
6:  cmp $0x71, %al
    jne 7f
    cmp $0xe0, %bl
    jne 7f
    orb $4, keys                /* Del (E0 71) */
7:  cmpb $7, keys
    jne next_byte
    mov $got, %esi
    call print
    POWER_OFF
done:
    mov $0x20, %al              /* end of interrupt */
    out %al, $PIC1_CMD
    popa
    iret

waiting: .asciz "waiting for ctrl-alt-del\n"
got:     .asciz "ctrl-alt-del\n"
#include "print.S"

    .section .data
    .p2align 3
idt:
    .space (KBD_VECTOR + 1) * 8
idt_desc:
    .word (KBD_VECTOR + 1) * 8 - 1
    .long idt
prev:   .byte 0
keys:   .byte 0
    .section .bss
    .p2align 4
    .space 1024
stack_top:
