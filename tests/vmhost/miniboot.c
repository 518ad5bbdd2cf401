/* miniboot: boots an x86_64 ELF vmlinux (Firecracker-style 64-bit entry) under
 * KVM with only an early serial console; prints the console, exits at
 * HLT/shutdown/reboot. Test tool for the pyro test host, not part of pyro. */
#include <elf.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MEM (256ul << 20)
#define BP 0x7000
#define CMDLINE 0x20000
#define PML4 0x9000
#define GDT 0x500
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
#define CK(x) do { if ((x) < 0) { perror(#x); exit(2); } } while (0)

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: miniboot VMLINUX CMDLINE\n"); return 2; }
    double t0 = now();
    int kvm = open("/dev/kvm", O_RDWR); CK(kvm);
    int vm = ioctl(kvm, KVM_CREATE_VM, 0); CK(vm);
    uint8_t *m = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    struct kvm_userspace_memory_region r = { .slot = 0, .guest_phys_addr = 0, .memory_size = MEM, .userspace_addr = (uintptr_t)m };
    CK(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r));
    CK(ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000));
    CK(ioctl(vm, KVM_CREATE_IRQCHIP, 0));
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    CK(ioctl(vm, KVM_CREATE_PIT2, &pit));
    /* load the ELF */
    int fd = open(argv[1], O_RDONLY); CK(fd);
    struct stat st; fstat(fd, &st);
    uint8_t *f = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)f;
    for (int i = 0; i < eh->e_phnum; i++) {
        Elf64_Phdr *ph = (Elf64_Phdr *)(f + eh->e_phoff + i * eh->e_phentsize);
        if (ph->p_type != PT_LOAD) continue;
        if (ph->p_paddr + ph->p_memsz > MEM) { fprintf(stderr, "segment too high\n"); return 2; }
        memcpy(m + ph->p_paddr, f + ph->p_offset, ph->p_filesz);
    }
    /* boot_params */
    uint8_t *bp = m + BP;
    *(uint16_t *)(bp + 0x1fe) = 0xaa55;
    *(uint32_t *)(bp + 0x202) = 0x53726448; /* HdrS */
    bp[0x210] = 0xff;                       /* type_of_loader */
    bp[0x211] = 0x01;                       /* loadflags: LOADED_HIGH */
    *(uint32_t *)(bp + 0x228) = CMDLINE;
    *(uint32_t *)(bp + 0x230) = 0x1000000;
    *(uint32_t *)(bp + 0x238) = strlen(argv[2]);
    strcpy((char *)m + CMDLINE, argv[2]);
    struct __attribute__((packed)) e820 { uint64_t a, s; uint32_t t; } *e = (void *)(bp + 0x2d0);
    e[0] = (struct e820){ 0, 0x9fc00, 1 };
    e[1] = (struct e820){ 0x100000, MEM - 0x100000, 1 };
    bp[0x1e8] = 2;
    /* identity map 1 GiB with 2 MiB pages */
    uint64_t *pml4 = (void *)(m + PML4), *pdpt = (void *)(m + PML4 + 0x1000), *pd = (void *)(m + PML4 + 0x2000);
    pml4[0] = (PML4 + 0x1000) | 3; pdpt[0] = (PML4 + 0x2000) | 3;
    for (int i = 0; i < 512; i++) pd[i] = ((uint64_t)i << 21) | 0x83;
    uint64_t *gdt = (void *)(m + GDT);
    gdt[0] = 0; gdt[1] = 0x00af9b000000ffffull; gdt[2] = 0x00cf93000000ffffull;
    /* vcpu */
    int cpu = ioctl(vm, KVM_CREATE_VCPU, 0); CK(cpu);
    struct { struct kvm_cpuid2 c; struct kvm_cpuid_entry2 e[256]; } cpuid = { .c.nent = 256 };
    CK(ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid));
    /* say "hypervisor" so the guest finds KVM's leaves and uses kvm-clock:
     * without it the guest calibrates its TSC against the PIT, which under
     * nested TCG fails and can hang the boot */
    for (unsigned i = 0; i < cpuid.c.nent; i++)
        if (cpuid.e[i].function == 1) cpuid.e[i].ecx |= 1u << 31;
    CK(ioctl(cpu, KVM_SET_CPUID2, &cpuid));
    struct kvm_sregs s; CK(ioctl(cpu, KVM_GET_SREGS, &s));
    struct kvm_segment cs = { .base = 0, .limit = 0xffffffff, .selector = 8, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1 };
    struct kvm_segment ds = { .base = 0, .limit = 0xffffffff, .selector = 16, .type = 3, .present = 1, .s = 1, .db = 1, .g = 1 };
    s.cs = cs; s.ds = s.es = s.fs = s.gs = s.ss = ds;
    s.gdt.base = GDT; s.gdt.limit = 23;
    s.cr3 = PML4; s.cr4 = 0x20; s.cr0 = 0x80000011; s.efer = 0x500;
    CK(ioctl(cpu, KVM_SET_SREGS, &s));
    struct kvm_regs g = { .rip = eh->e_entry, .rsi = BP, .rsp = 0x8ff0, .rflags = 2 };
    CK(ioctl(cpu, KVM_SET_REGS, &g));
    int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
    alarm(120);
    for (;;) {
        if (ioctl(cpu, KVM_RUN, 0) < 0) { perror("KVM_RUN"); return 1; }
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *d = (uint8_t *)run + run->io.data_offset;
            if (run->io.direction == KVM_EXIT_IO_OUT) {
                if (run->io.port == 0x3f8) { fputc(*d, stdout); if (*d == '\n') fflush(stdout); }
                if (run->io.port == 0x64 && *d == 0xfe) goto reboot;
            } else {
                memset(d, 0, run->io.size * run->io.count);
                if (run->io.port == 0x3fd) *d = 0x60;
            }
            break;
        }
        case KVM_EXIT_MMIO: if (!run->mmio.is_write) memset(run->mmio.data, 0, 8); break;
        case KVM_EXIT_HLT: printf("\nminiboot: HLT after %.2f s\n", now() - t0); return 0;
        case KVM_EXIT_SHUTDOWN: goto reboot;
        default: printf("\nminiboot: exit reason %d after %.2f s\n", run->exit_reason, now() - t0); return 1;
        }
    }
reboot:
    fflush(stdout);
    printf("\nminiboot: guest reset/reboot after %.2f s\n", now() - t0);
    return 0;
}
