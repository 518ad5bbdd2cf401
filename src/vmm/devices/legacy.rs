//! The PC legacy devices a Linux guest expects on its I/O ports: the 8250
//! UART (kernel console, into a log file) and the i8042 controller
//! (`i8042.rs`), whose reset command is how the guest ends the VM.

use super::console_log::RingLog;
use super::i8042::I8042;
use super::IrqLine;
use crate::vmm::layout::{I8042_PORT, I8042_PORT_END, SERIAL_PORT};
use std::io::{LineWriter, Write};
use std::sync::Mutex;
use vm_superio::serial::NoEvents;
use vm_superio::Serial;

pub struct PortIo {
    serial: Mutex<Serial<IrqLine, NoEvents, ConsoleLog>>,
    i8042: Mutex<I8042>,
}

/// Console output, line-buffered so the log is readable while the VM runs
/// without a write per byte, into a log of bounded size.
pub struct ConsoleLog(LineWriter<RingLog>);

impl Write for ConsoleLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl PortIo {
    pub fn new(serial_irq: IrqLine, log: RingLog, kbd_irq: IrqLine, reset: IrqLine) -> Self {
        PortIo {
            serial: Mutex::new(Serial::new(serial_irq, ConsoleLog(LineWriter::new(log)))),
            i8042: Mutex::new(I8042::new(kbd_irq, reset)),
        }
    }

    pub fn read(&self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        if data.len() != 1 {
            return;
        }
        if (SERIAL_PORT..SERIAL_PORT + 8).contains(&port) {
            data[0] = self.serial.lock().unwrap().read((port - SERIAL_PORT) as u8);
        } else if port == I8042_PORT || port == I8042_PORT_END {
            data[0] = self.i8042.lock().unwrap().read((port - I8042_PORT) as u8);
        }
    }

    pub fn write(&self, port: u16, data: &[u8]) {
        if data.len() != 1 {
            return;
        }
        if (SERIAL_PORT..SERIAL_PORT + 8).contains(&port) {
            // A console write error (disk full) must not stop the guest.
            let _ = self
                .serial
                .lock()
                .unwrap()
                .write((port - SERIAL_PORT) as u8, data[0]);
        } else if port == I8042_PORT || port == I8042_PORT_END {
            self.i8042
                .lock()
                .unwrap()
                .write((port - I8042_PORT) as u8, data[0]);
        }
    }

    pub fn flush(&self) {
        let _ = self.serial.lock().unwrap().writer_mut().flush();
    }
}
