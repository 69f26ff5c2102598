/* demo: a desktop-like screen on the framebuffer the VMM describes in the zero page's
 * screen_info (64-bit Linux entry, %rsi = zero page): a top panel, a window with a title bar,
 * a task bar, and a clock-like block in the panel whose colour changes over time. Prints
 * "demo desktop drawn" on COM1 after the first frame, then keeps the clock ticking.
 *
 * Time: the PIT's channel 0 interrupts 18.2 times a second (IRQ0, the largest divisor); the
 * clock moves every second interrupt, and the guest halts in between, as an idle desktop OS
 * does, so that a host runs many of them without a core each.
 *
 * Keys: the keyboard interrupt (IRQ1 through the legacy PIC) reads scancode set 2; each key
 * pressed draws a 16x16 block in the window, the n-th at x = 100 + 20 * (n % 20),
 * y = 120 + 20 * (n / 20 % 3), coloured (make code * 0x010203) & 0xffffff. Ctrl, Alt and
 * Del held together print "ctrl-alt-del: powering off" on COM1 and power the guest off.
 *
 * Pointer: the PS/2 mouse (IRQ12) moves an 8x8 block coloured 0xff8000, starting at (0,0),
 * restoring what was under it as it goes.
 *
 * Colours (x8r8g8b8): background 0x306090, top panel 0x202020, task bar 0x303030,
 * window 0xf0f0f0 with title bar 0x4060a0. */
#include "common.S"
#define BACKGROUND  0x00306090
#define PANEL       0x00202020
#define TASKBAR     0x00303030
#define WINDOW      0x00f0f0f0
#define TITLE       0x004060a0
#define POINTER     0x00ff8000

/* What the interrupt handlers use, saved and restored around them. */
.macro SAVE_REGS
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
.endm
.macro RESTORE_REGS
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
.endm

    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    lea stack_top(%rip), %rsp
    movl 0x18(%rsi), %eax           /* lfb_base */
    mov %rax, fb_base(%rip)
    movzwl 0x12(%rsi), %eax         /* lfb_width */
    mov %rax, fb_width(%rip)
    movzwl 0x14(%rsi), %eax         /* lfb_height */
    mov %rax, fb_height(%rip)
    movzwl 0x24(%rsi), %eax         /* lfb_linelength */
    mov %rax, fb_stride(%rip)

    /* fill_rect(x0=%r8, y0=%r9, x1=%r10, y1=%r11, colour=%r12d) */
    xor %r8, %r8
    xor %r9, %r9
    mov fb_width(%rip), %r10
    mov fb_height(%rip), %r11
    mov $BACKGROUND, %r12d
    call fill_rect

    xor %r9, %r9                    /* top panel: 24 rows */
    mov $24, %r11
    mov $PANEL, %r12d
    call fill_rect

    mov fb_height(%rip), %r9        /* task bar: the last 32 rows */
    sub $32, %r9
    mov fb_height(%rip), %r11
    mov $TASKBAR, %r12d
    call fill_rect

    mov $80, %r8                    /* window: (80,80) to (width/2, height/2) */
    mov $80, %r9
    mov fb_width(%rip), %r10
    shr $1, %r10
    mov fb_height(%rip), %r11
    shr $1, %r11
    mov $WINDOW, %r12d
    call fill_rect
    mov $100, %r11                  /* its title bar: 20 rows */
    mov $TITLE, %r12d
    call fill_rect

    /* The timer and keyboard: 64-bit interrupt gates for vectors 0x20 and 0x21, then the PICs
     * remapped to 0x20/0x28 with IRQ0, IRQ1 and (below) IRQ12 unmasked. */
    lea timer_isr(%rip), %rax
    lea idt + 0x20 * 16(%rip), %rdi
    call set_gate
    lea kbd_isr(%rip), %rax
    lea idt + 0x21 * 16(%rip), %rdi
    call set_gate
    lea mouse_isr(%rip), %rax
    lea idt + 0x2c * 16(%rip), %rdi
    call set_gate
    lidt idt_desc(%rip)
    /* The mouse: enable the auxiliary port, its interrupt in the controller, and reporting. */
    mov $0xa8, %al
    out %al, $0x64
    mov $0x20, %al
    out %al, $0x64
    call wait_output
    in $0x60, %al
    or $0x02, %al
    mov %al, %bl
    mov $0x60, %al
    out %al, $0x64
    mov %bl, %al
    out %al, $0x60
    mov $0xd4, %al
    out %al, $0x64
    mov $0xf4, %al
    out %al, $0x60
    call wait_output
    in $0x60, %al                   /* the mouse's acknowledgement */
    mov $0x11, %al
    out %al, $0x20
    out %al, $0xa0
    mov $0x20, %al
    out %al, $0x21
    mov $0x28, %al
    out %al, $0xa1
    mov $0x04, %al
    out %al, $0x21
    mov $0x02, %al
    out %al, $0xa1
    mov $0x01, %al
    out %al, $0x21
    out %al, $0xa1
    mov $0x34, %al                  /* PIT channel 0: low then high byte, rate generator */
    out %al, $0x43
    xor %eax, %eax                  /* divisor 0 = 65536: 1193182 / 65536 = 18.2 Hz */
    out %al, $0x40
    out %al, $0x40
    mov $0xf8, %al                  /* master: timer (0), keyboard (1) and the cascade (2) */
    out %al, $0x21
    mov $0xef, %al                  /* slave: the mouse (12) */
    out %al, $0xa1
    sti

    lea msg(%rip), %rsi
1:  lodsb
    test %al, %al
    jz tick
    PUTC_BODY_AT 2
    jmp 1b

tick:                               /* the clock: a 16x16 block at the panel's right end */
    incl clock(%rip)
    mov fb_width(%rip), %r10
    sub $8, %r10
    mov %r10, %r8
    sub $16, %r8
    mov $4, %r9
    mov $20, %r11
    mov clock(%rip), %r12d
    imul $0x00051f, %r12d, %r12d
    and $0x00ffffff, %r12d
    call fill_rect
    mov ticks(%rip), %r13d          /* halt until two timer interrupts (0.11 s) have passed; */
    add $2, %r13d                   /* the handlers leave %r13 alone */
3:  hlt
    mov ticks(%rip), %eax
    sub %r13d, %eax
    js 3b
    jmp tick

timer_isr:
    push %rax
    incl ticks(%rip)
    mov $0x20, %al                  /* end of interrupt */
    out %al, $0x20
    pop %rax
    iretq

kbd_isr:
    SAVE_REGS
6:  in $0x64, %al
    test $1, %al
    jz 9f
    test $0x20, %al                 /* a mouse byte: the mouse handler's */
    jnz 9f
    in $0x60, %al
    movzbl %al, %eax
    movzbl prev(%rip), %ebx
    mov %al, prev(%rip)
    cmp $0xf0, %al                  /* prefixes carry no key */
    je 6b
    cmp $0xe0, %al
    je 6b
    xor %ecx, %ecx                  /* Ctrl, Alt and Del held: bits 1, 2 and 4 of `held` */
    cmp $0x14, %al
    jne 4f
    mov $1, %cl
4:  cmp $0x11, %al
    jne 4f
    mov $2, %cl
4:  cmp $0x71, %al                  /* Del, or the keypad's Del (no E0 prefix) */
    jne 4f
    mov $4, %cl
4:  cmp $0xf0, %bl                  /* a release */
    jne 5f
    not %cl
    and %cl, held(%rip)
    jmp 6b
5:  or %cl, held(%rip)
    cmpb $7, held(%rip)
    je shut_down
    imul $0x010203, %eax, %r12d     /* the key's colour */
    and $0x00ffffff, %r12d
    mov keys(%rip), %eax
    incl keys(%rip)
    xor %edx, %edx
    mov $20, %ecx
    div %ecx                        /* eax = n / 20, edx = n % 20 */
    imul $20, %edx, %r8d
    add $100, %r8d
    xor %edx, %edx
    mov $3, %ecx
    div %ecx                        /* edx = n / 20 % 3 */
    imul $20, %edx, %r9d
    add $120, %r9d
    lea 16(%r8), %r10
    lea 16(%r9), %r11
    call fill_rect
    jmp 6b
9:  mov $0x20, %al                  /* end of interrupt */
    out %al, $0x20
    RESTORE_REGS
    iretq

/* Ctrl+Alt+Del: what the launcher sends when it is asked to stop (SIGTERM), and what a
 * viewer's Ctrl+Alt+Del button sends. The demo says so on COM1 and powers off, as a desktop
 * OS configured to shut down on it would. */
shut_down:
    lea bye(%rip), %rsi
8:  lodsb
    test %al, %al
    jz 8f
    PUTC_BODY_AT 9
    jmp 8b
8:  POWER_OFF

/* set_gate: a 64-bit interrupt gate at %rdi for the handler at %rax. */
set_gate:
    mov %ax, (%rdi)
    movw $0x08, 2(%rdi)
    movw $0x8e00, 4(%rdi)
    shr $16, %rax
    mov %ax, 6(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    movl $0, 12(%rdi)
    ret

wait_output:
7:  in $0x64, %al
    test $1, %al
    jz 7b
    ret

mouse_isr:
    SAVE_REGS
10: in $0x64, %al
    test $1, %al
    jz 19f
    test $0x20, %al                 /* a keyboard byte: the keyboard handler's */
    jz 19f
    in $0x60, %al
    movzbl packet_len(%rip), %ecx
    test %ecx, %ecx
    jnz 11f
    test $0x08, %al                 /* a packet's first byte has bit 3 set */
    jz 10b
11: lea packet(%rip), %rdx
    mov %al, (%rdx, %rcx)
    inc %ecx
    mov %cl, packet_len(%rip)
    cmp $3, %ecx
    jb 10b
    movb $0, packet_len(%rip)
    movzbl packet+1(%rip), %eax     /* dx, 9-bit two's complement */
    testb $0x10, packet(%rip)
    jz 12f
    or $0xffffff00, %eax
12: movslq %eax, %rax
    movzbl packet+2(%rip), %ebx     /* dy, upwards */
    testb $0x20, packet(%rip)
    jz 13f
    or $0xffffff00, %ebx
13: movslq %ebx, %rbx
    push %rax
    push %rbx
    call hide_pointer
    pop %rbx
    pop %rax
    add pointer_x(%rip), %rax
    mov pointer_y(%rip), %rcx
    sub %rbx, %rcx
    mov fb_width(%rip), %rdx
    sub $8, %rdx
    cmp $0, %rax
    jge 14f
    xor %eax, %eax
14: cmp %rdx, %rax
    jle 15f
    mov %rdx, %rax
15: mov fb_height(%rip), %rdx
    sub $8, %rdx
    cmp $0, %rcx
    jge 16f
    xor %ecx, %ecx
16: cmp %rdx, %rcx
    jle 17f
    mov %rdx, %rcx
17: mov %rax, pointer_x(%rip)
    mov %rcx, pointer_y(%rip)
    call show_pointer
    jmp 10b
19: mov $0x20, %al                  /* end of interrupt: slave, then master */
    out %al, $0xa0
    out %al, $0x20
    RESTORE_REGS
    iretq

/* pointer_addr: %rdi = the framebuffer address of the pointer's top-left pixel. */
pointer_addr:
    mov pointer_y(%rip), %rdi
    imul fb_stride(%rip), %rdi
    mov pointer_x(%rip), %rdx
    lea (%rdi, %rdx, 4), %rdi
    add fb_base(%rip), %rdi
    ret

/* hide_pointer: puts back the 8x8 pixels the pointer covers. */
hide_pointer:
    cmpb $0, pointer_shown(%rip)
    je 21f
    call pointer_addr
    lea pointer_save(%rip), %rsi
    mov $8, %edx
20: mov $8, %ecx
    push %rdi
    rep movsl
    pop %rdi
    add fb_stride(%rip), %rdi
    dec %edx
    jnz 20b
21: ret

/* show_pointer: saves the 8x8 pixels at the pointer, then draws it there. */
show_pointer:
    call pointer_addr
    mov %rdi, %rsi
    lea pointer_save(%rip), %rdi
    mov $8, %edx
22: mov $8, %ecx
    push %rsi
    rep movsl
    pop %rsi
    add fb_stride(%rip), %rsi
    dec %edx
    jnz 22b
    mov pointer_x(%rip), %r8
    mov pointer_y(%rip), %r9
    lea 8(%r8), %r10
    lea 8(%r9), %r11
    mov $POINTER, %r12d
    call fill_rect
    movb $1, pointer_shown(%rip)
    ret

fill_rect:
    mov %r9, %rdx                   /* y */
4:  cmp %r11, %rdx
    jae 5f
    mov %rdx, %rdi
    imul fb_stride(%rip), %rdi
    lea (%rdi, %r8, 4), %rdi
    add fb_base(%rip), %rdi
    mov %r10, %rcx
    sub %r8, %rcx
    mov %r12d, %eax
    rep stosl
    inc %rdx
    jmp 4b
5:  ret

msg: .asciz "demo desktop drawn\n"
bye: .asciz "ctrl-alt-del: powering off\n"

    .section .data
    .p2align 3
fb_base:   .quad 0
fb_width:  .quad 0
fb_height: .quad 0
fb_stride: .quad 0
clock:     .long 0
ticks:     .long 0
keys:      .long 0
prev:      .byte 0
held:      .byte 0
packet_len: .byte 0
packet:    .space 3
pointer_shown: .byte 0
    .p2align 3
pointer_x: .quad 0
pointer_y: .quad 0
pointer_save: .space 8 * 8 * 4
    .p2align 4
idt:       .space 0x2d * 16
idt_desc:  .word 0x2d * 16 - 1
           .quad idt
    .section .bss
    .p2align 4
    .space 1024
stack_top:
