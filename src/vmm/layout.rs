//! Guest physical address layout, in one place.
//!
//! Low memory follows the x86 Linux boot protocol's conventions (the zero
//! page, command line and boot page tables sit below 1 MiB, the kernel at
//! 1 MiB); devices live in the 32-bit MMIO hole below 4 GiB, so RAM above
//! 3 GiB continues at 4 GiB.

pub const BOOT_GDT: u64 = 0x500;
pub const BOOT_IDT: u64 = 0x520;
pub const ZERO_PAGE: u64 = 0x7000;
pub const BOOT_STACK: u64 = 0x8ff0;
pub const PML4: u64 = 0x9000;
pub const PDPTE: u64 = 0xa000;
pub const PDE: u64 = 0xb000;
pub const CMDLINE: u64 = 0x20000;
pub const CMDLINE_MAX: usize = 4096;
/// Where the MP table goes: the extended BIOS data area, reserved in e820.
pub const EBDA_START: u64 = 0x9fc00;
pub const HIMEM_START: u64 = 0x10_0000;

pub const MMIO_HOLE_START: u64 = 0xc000_0000;
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// Legacy ISA interrupts 0-4 are taken (timer, keyboard, cascade, COM2, COM1).
pub const VIRTIO_IRQ_BASE: u32 = 5;
pub const IOAPIC_PINS: u32 = 24;
const _: () = assert!(VIRTIO_MMIO_BASE >= MMIO_HOLE_START && VIRTIO_MMIO_BASE < MMIO_HOLE_END);

pub const SERIAL_PORT: u16 = 0x3f8;
pub const SERIAL_IRQ: u32 = 4;
pub const I8042_PORT: u16 = 0x60;
pub const I8042_IRQ: u32 = 1;
pub const I8042_PORT_END: u16 = 0x64;

/// The KVM TSS and identity map must sit in guest-physical space no RAM uses.
pub const KVM_TSS_ADDR: usize = 0xfffb_d000;

/// RAM regions for `mem_bytes` of guest memory, skipping the MMIO hole.
pub fn ram_regions(mem_bytes: u64) -> Vec<(u64, u64)> {
    if mem_bytes <= MMIO_HOLE_START {
        vec![(0, mem_bytes)]
    } else {
        vec![
            (0, MMIO_HOLE_START),
            (MMIO_HOLE_END, mem_bytes - MMIO_HOLE_START),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_skips_the_mmio_hole() {
        assert_eq!(ram_regions(1 << 30), vec![(0, 1 << 30)]);
        let big = ram_regions(4 << 30);
        assert_eq!(big[0], (0, MMIO_HOLE_START));
        assert_eq!(big[1], (MMIO_HOLE_END, (4 << 30) - MMIO_HOLE_START));
    }
}
