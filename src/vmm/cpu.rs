//! Per-vCPU state for a direct 64-bit Linux boot: CPUID, MSRs, registers,
//! segments, FPU and the local APIC's LINT pins.

use super::boot::{CODE_SELECTOR, DATA_SELECTOR, GDT, TSS_SELECTOR};
use super::layout::*;
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, CpuId, Msrs};
use kvm_ioctls::VcpuFd;

/// Why a vCPU could not be set up.
#[derive(Debug)]
pub enum CpuError {
    /// The named vCPU ioctl failed.
    Kvm(&'static str, kvm_ioctls::Error),
    MsrList(vmm_sys_util::fam::Error),
    /// KVM took only the first `set` of `total` MSRs; `refused` is the next.
    MsrRefused {
        set: usize,
        total: usize,
        refused: u32,
    },
}

impl std::fmt::Display for CpuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CpuError::Kvm(ioctl, e) => write!(f, "{ioctl}: {e}"),
            CpuError::MsrList(e) => write!(f, "MSR list: {e:?}"),
            CpuError::MsrRefused {
                set,
                total,
                refused,
            } => write!(
                f,
                "KVM_SET_MSRS set {set} of {total} MSRs (MSR {refused:#x} refused)"
            ),
        }
    }
}

impl std::error::Error for CpuError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CpuError::Kvm(_, e) => Some(e),
            _ => None,
        }
    }
}

fn kvm_err(ioctl: &'static str) -> impl Fn(kvm_ioctls::Error) -> CpuError {
    move |e| CpuError::Kvm(ioctl, e)
}

pub fn configure(
    vcpu: &VcpuFd,
    base_cpuid: &CpuId,
    id: u8,
    count: u8,
    entry: u64,
    tsc_deadline: bool,
) -> Result<(), CpuError> {
    vcpu.set_cpuid2(&cpuid_for(base_cpuid, id, count, tsc_deadline))
        .map_err(kvm_err("KVM_SET_CPUID2"))?;
    set_msrs(vcpu)?;
    set_lint(vcpu)?;
    if id != 0 {
        // Secondary CPUs wait for INIT/SIPI from the boot CPU.
        return Ok(());
    }
    let regs = kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: ZERO_PAGE,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm_err("KVM_SET_FPU"))?;
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    let code = segment(GDT[1], CODE_SELECTOR);
    let data = segment(GDT[2], DATA_SELECTOR);
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = BOOT_IDT;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(GDT[3], TSS_SELECTOR);
    sregs.cr3 = PML4;
    sregs.cr4 |= 0x20; // PAE
    sregs.cr0 |= 0x1 | 0x8000_0000; // PE | PG
    sregs.efer |= 0x100 | 0x400; // LME | LMA
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))
}

fn segment(entry: u64, selector: u16) -> kvm_segment {
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24),
        limit: ((entry & 0xffff) | (((entry >> 48) & 0xf) << 16)) as u32,
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g: ((entry >> 55) & 1) as u8,
        avl: ((entry >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// Tells each CPU its APIC id and that it runs under a hypervisor, and
/// advertises the TSC-deadline timer when KVM emulates it: KVM cannot put
/// that bit in its supported list itself. Without it the guest calibrates
/// the APIC timer against the PIT, which fails under nested virtualization
/// and costs seconds of boot.
fn cpuid_for(base: &CpuId, id: u8, count: u8, tsc_deadline: bool) -> CpuId {
    let mut cpuid = base.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | ((id as u32) << 24) | ((count as u32) << 16);
                e.ecx |= 1 << 31;
                if tsc_deadline {
                    e.ecx |= 1 << 24;
                }
                if count > 1 {
                    e.edx |= 1 << 28;
                }
            }
            0xb => e.edx = id as u32,
            _ => {}
        }
    }
    cpuid
}

fn set_msrs(vcpu: &VcpuFd) -> Result<(), CpuError> {
    let entry = |index: u32, data: u64| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    let list = [
        entry(0x174, 0),             // SYSENTER_CS
        entry(0x175, 0),             // SYSENTER_ESP
        entry(0x176, 0),             // SYSENTER_EIP
        entry(0xc000_0081, 0),       // STAR
        entry(0xc000_0082, 0),       // LSTAR
        entry(0xc000_0083, 0),       // CSTAR
        entry(0xc000_0084, 0),       // SYSCALL_MASK
        entry(0xc000_0102, 0),       // KERNEL_GS_BASE
        entry(0x10, 0),              // TSC
        entry(0x1a0, 1),             // MISC_ENABLE: fast strings
        entry(0x2ff, (1 << 11) | 6), // MTRR default type: enabled, write-back
    ];
    let msrs = Msrs::from_entries(&list).map_err(CpuError::MsrList)?;
    let n = vcpu.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;
    if n != list.len() {
        return Err(CpuError::MsrRefused {
            set: n,
            total: list.len(),
            refused: list[n].index,
        });
    }
    Ok(())
}

/// LINT0 = ExtINT (the PIC), LINT1 = NMI, as a BIOS would leave them.
fn set_lint(vcpu: &VcpuFd) -> Result<(), CpuError> {
    const LVT_LINT0: usize = 0x350;
    const LVT_LINT1: usize = 0x360;
    let mut lapic = vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
    for (off, mode) in [(LVT_LINT0, 7u32), (LVT_LINT1, 4u32)] {
        let mut b = [0u8; 4];
        for (i, v) in b.iter_mut().enumerate() {
            *v = lapic.regs[off + i] as u8;
        }
        let val = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
        for (i, v) in val.to_le_bytes().iter().enumerate() {
            lapic.regs[off + i] = *v as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_decode_the_gdt() {
        let cs = segment(GDT[1], CODE_SELECTOR);
        assert_eq!(
            (cs.l, cs.present, cs.type_, cs.g, cs.limit),
            (1, 1, 0xb, 1, 0xfffff)
        );
        let ds = segment(GDT[2], DATA_SELECTOR);
        assert_eq!((ds.db, ds.type_, ds.s), (1, 3, 1));
    }
}
