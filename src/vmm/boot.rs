//! Loading the kernel and preparing the 64-bit boot state in guest memory:
//! zero page (boot_params + e820), command line, GDT, identity page tables.

use super::layout::*;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{bzimage::BzImage, elf::Elf, KernelLoader};
use std::fs::File;
use std::path::Path;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;

/// Why the guest could not be made ready to boot.
#[derive(Debug)]
pub enum BootError {
    OpenKernel(std::path::PathBuf, std::io::Error),
    /// The kernel file is neither an ELF vmlinux nor a bzImage: what each
    /// loader said.
    LoadKernel {
        elf: linux_loader::loader::Error,
        bzimage: linux_loader::loader::Error,
    },
    CmdlineTooLong(usize),
    /// A boot structure (named) did not fit guest memory.
    WriteMemory(&'static str),
    MpTable(vm_memory::GuestMemoryError),
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::OpenKernel(p, e) => write!(f, "cannot open kernel {}: {e}", p.display()),
            BootError::LoadKernel { elf, bzimage } => write!(
                f,
                "cannot load kernel (neither ELF vmlinux nor bzImage): elf: {elf}; bzImage: {bzimage}"
            ),
            BootError::CmdlineTooLong(n) => {
                write!(f, "kernel command line is {n} bytes, over {CMDLINE_MAX}")
            }
            BootError::WriteMemory(what) => write!(f, "cannot write {what} into guest memory"),
            BootError::MpTable(e) => write!(f, "writing MP table: {e}"),
        }
    }
}

impl std::error::Error for BootError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BootError::OpenKernel(_, e) => Some(e),
            BootError::LoadKernel { elf, .. } => Some(elf),
            BootError::MpTable(e) => Some(e),
            _ => None,
        }
    }
}

/// Loads the kernel and writes all boot structures; returns the 64-bit entry point.
pub fn load(
    mem: &GuestMemoryMmap,
    kernel: &Path,
    cmdline: &str,
    mem_bytes: u64,
) -> Result<u64, BootError> {
    let mut file = File::open(kernel).map_err(|e| BootError::OpenKernel(kernel.into(), e))?;
    let himem = Some(GuestAddress(HIMEM_START));
    let (entry, setup_header) = match Elf::load(mem, None, &mut file, himem) {
        Ok(r) => (r.kernel_load.0, None),
        Err(elf_err) => match BzImage::load(mem, None, &mut file, himem) {
            // The 64-bit entry of a bzImage is 0x200 past its load address.
            Ok(r) => (r.kernel_load.0 + 0x200, r.setup_header),
            Err(bz_err) => {
                return Err(BootError::LoadKernel {
                    elf: elf_err,
                    bzimage: bz_err,
                })
            }
        },
    };
    if cmdline.len() + 1 > CMDLINE_MAX {
        return Err(BootError::CmdlineTooLong(cmdline.len()));
    }
    let mut line = cmdline.as_bytes().to_vec();
    line.push(0);
    mem.write_slice(&line, GuestAddress(CMDLINE))
        .map_err(|_| BootError::WriteMemory("command line"))?;

    let mut params = boot_params::default();
    if let Some(hdr) = setup_header {
        params.hdr = hdr;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE as u32;
    params.hdr.cmdline_size = line.len() as u32;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    let mut e820 = vec![
        (0u64, EBDA_START, E820_RAM),
        (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
    ];
    for (start, size) in ram_regions(mem_bytes) {
        let (start, size) = if start == 0 {
            (HIMEM_START, size - HIMEM_START)
        } else {
            (start, size)
        };
        e820.push((start, size, E820_RAM));
    }
    for (i, (addr, size, type_)) in e820.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *type_,
        };
    }
    params.e820_entries = e820.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE))
        .map_err(|_| BootError::WriteMemory("zero page"))?;
    write_gdt(mem)?;
    write_page_tables(mem)?;
    Ok(entry)
}

/// Flat 64-bit code and data segments plus a TSS, as the boot protocol expects.
pub const GDT: [u64; 4] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];
pub const CODE_SELECTOR: u16 = 1 << 3;
pub const DATA_SELECTOR: u16 = 2 << 3;
pub const TSS_SELECTOR: u16 = 3 << 3;

const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

fn write_gdt(mem: &GuestMemoryMmap) -> Result<(), BootError> {
    for (i, entry) in GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT + (i as u64) * 8))
            .map_err(|_| BootError::WriteMemory("GDT"))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT))
        .map_err(|_| BootError::WriteMemory("IDT"))
}

/// Identity-maps the first 1 GiB with 2 MiB pages; the kernel builds its own
/// tables right after entry, this only has to cover the kernel image.
fn write_page_tables(mem: &GuestMemoryMmap) -> Result<(), BootError> {
    let err = |_| BootError::WriteMemory("page tables");
    mem.write_obj(PDPTE | 0x03, GuestAddress(PML4))
        .map_err(err)?;
    mem.write_obj(PDE | 0x03, GuestAddress(PDPTE))
        .map_err(err)?;
    for i in 0..512u64 {
        mem.write_obj((i << 21) | 0x83, GuestAddress(PDE + i * 8))
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_match_the_boot_protocol() {
        assert_eq!(GDT[1], 0x00af_9b00_0000_ffff);
        assert_eq!(GDT[2], 0x00cf_9300_0000_ffff);
        assert_eq!(GDT[3], 0x008f_8b00_0000_ffff);
    }

    #[test]
    fn loads_a_bzimage_and_enters_64_bit_code() {
        // A minimal bzImage: 4 setup sectors after the boot sector, a boot
        // protocol 2.15 header that loads high, then the "kernel".
        let mut img = vec![0u8; 5 * 512];
        img[0x1f1] = 4;
        img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        img[0x211] = 0x01;
        img[0x214..0x218].copy_from_slice(&(HIMEM_START as u32).to_le_bytes());
        let payload: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        img.extend_from_slice(&payload);
        let tmp = std::env::temp_dir().join(format!(
            "pyro-bzimage-{}",
            crate::engine::paths::random_id(4)
        ));
        std::fs::write(&tmp, &img).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let entry = load(&mem, &tmp, "console=ttyS0", 64 << 20);
        std::fs::remove_file(&tmp).unwrap();
        assert_eq!(entry.unwrap(), HIMEM_START + 0x200);
        let mut got = vec![0u8; payload.len()];
        mem.read_slice(&mut got, GuestAddress(HIMEM_START)).unwrap();
        assert_eq!(got, payload);
        let params: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE)).unwrap();
        assert_eq!(
            { params.hdr.version },
            0x020f,
            "the image's setup header is kept"
        );
        assert_eq!({ params.hdr.cmd_line_ptr }, CMDLINE as u32);
        let (e820, n) = (params.e820_table, params.e820_entries);
        assert_eq!(n, 3);
        assert_eq!({ e820[2].addr }, HIMEM_START);
    }

    #[test]
    fn non_kernel_file_is_a_clear_error() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let tmp = std::env::temp_dir().join(format!("pyro-notakernel-{}", std::process::id()));
        std::fs::write(&tmp, b"definitely not a kernel").unwrap();
        let err = load(&mem, &tmp, "console=ttyS0", 64 << 20).unwrap_err();
        std::fs::remove_file(&tmp).unwrap();
        assert!(matches!(err, BootError::LoadKernel { .. }), "{err:?}");
        assert!(
            err.to_string().contains("neither ELF vmlinux nor bzImage"),
            "{err}"
        );
    }
}
