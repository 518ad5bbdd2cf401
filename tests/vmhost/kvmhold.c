/* vmhost-kvmhold: keeps one idle KVM VM open for the whole life of L1.
 *
 * L1's kernel (6.1) switches KVM on and off with the number of VMs: the
 * first VM enables SVM on every CPU and flips the scheduler's
 * preempt-notifier static key, the last one to go undoes both. Flipping a
 * static key live-patches the scheduler's hot path with int3 breakpoints
 * while both CPUs run it; under QEMU's multi-threaded TCG that patching
 * wedged L1 again and again (one CPU in the int3 handler, the other in
 * __schedule, for good), always while VMs were started and stopped in
 * quick succession. With this VM open, the count never drops to zero, so
 * nothing is patched and SVM stays on after the first VM.
 *
 * The vCPU (with an in-kernel irqchip, as pyro and Firecracker use) also
 * pins KVM's "APIC disabled" static keys, which every new vCPU would flip
 * otherwise. It never runs. Prints one line when it holds the VM, then
 * sleeps until L1 powers off. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* From <linux/kvm.h> (musl-gcc does not see the kernel's headers). */
#define KVM_CREATE_VM _IO(0xAE, 0x01)
#define KVM_CREATE_VCPU _IO(0xAE, 0x41)
#define KVM_CREATE_IRQCHIP _IO(0xAE, 0x60)

static int fail(const char *what) {
    perror(what);
    return 1;
}

int main(void) {
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        return fail("vmhost-kvmhold: open /dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        return fail("vmhost-kvmhold: KVM_CREATE_VM");
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
        return fail("vmhost-kvmhold: KVM_CREATE_IRQCHIP");
    if (ioctl(vm, KVM_CREATE_VCPU, 0) < 0)
        return fail("vmhost-kvmhold: KVM_CREATE_VCPU");
    printf("vmhost-kvmhold: holding an idle VM\n");
    fflush(stdout);
    for (;;)
        pause();
}
