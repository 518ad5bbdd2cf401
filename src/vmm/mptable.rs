//! The Intel MultiProcessor table: without ACPI it is how the guest learns
//! how many CPUs there are and where the IOAPIC is.

use super::layout::{EBDA_START, IOAPIC_PINS};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const APIC_DEFAULT_BASE: u32 = 0xfee0_0000;
const IOAPIC_DEFAULT_BASE: u32 = 0xfec0_0000;
const APIC_VERSION: u8 = 0x14;
const MPC_SPEC: u8 = 4;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Builds the floating pointer plus configuration table for `cpus` CPUs,
/// laid out to start at `base`.
pub fn build(cpus: u8, base: u32) -> Vec<u8> {
    let ioapic_id = cpus + 1;
    let mut entries = Vec::new();
    for id in 0..cpus {
        entries.push(0u8); // processor
        entries.push(id);
        entries.push(APIC_VERSION);
        entries.push(1 | if id == 0 { 2 } else { 0 }); // enabled, bootstrap
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // family 6 signature
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // FPU + APIC
        entries.extend_from_slice(&[0u8; 8]);
    }
    entries.extend_from_slice(&[1, 0]); // bus 0
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[2, ioapic_id, 0x11, 1]); // IOAPIC, enabled
    entries.extend_from_slice(&IOAPIC_DEFAULT_BASE.to_le_bytes());
    for pin in 0..IOAPIC_PINS as u8 {
        entries.extend_from_slice(&[3, 0, 0, 0, 0, pin, ioapic_id, pin]); // INT, bus 0
    }
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0, 0]); // ExtINT -> LINT0 of all
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]); // NMI -> LINT1 of all

    let mut table = Vec::new();
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.push(MPC_SPEC);
    table.push(0); // checksum, patched below
    table.extend_from_slice(b"PYRO    ");
    table.extend_from_slice(b"MICROVM     ");
    table.extend_from_slice(&0u32.to_le_bytes()); // oem table
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&((cpus as u16) + 1 + 1 + IOAPIC_PINS as u16 + 2).to_le_bytes());
    table.extend_from_slice(&APIC_DEFAULT_BASE.to_le_bytes());
    table.extend_from_slice(&[0u8; 4]);
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut mpf = Vec::with_capacity(16);
    mpf.extend_from_slice(b"_MP_");
    mpf.extend_from_slice(&(base + 16).to_le_bytes());
    mpf.extend_from_slice(&[1, MPC_SPEC, 0, 0, 0, 0, 0, 0]);
    mpf[10] = checksum(&mpf);
    mpf.extend_from_slice(&table);
    mpf
}

pub fn write(mem: &GuestMemoryMmap, cpus: u8) -> Result<(), vm_memory::GuestMemoryError> {
    mem.write_slice(&build(cpus, EBDA_START as u32), GuestAddress(EBDA_START))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_lengths_are_consistent() {
        let t = build(4, 0x9fc00);
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(t[..16].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let table = &t[16..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert!(t.len() < 0x400, "must fit in the EBDA");
    }
}
