//! Enough of the i8042 keyboard controller for Linux's probe to succeed at
//! once, plus the reset line: the guest's `reboot=k` writes 0xfe to the
//! command port, which ends the VM. (A controller that never answers makes
//! the driver's probe spend over a second in timeouts on every boot.)

use super::IrqLine;
use std::collections::VecDeque;
use vm_superio::Trigger;

pub const DATA: u8 = 0;
pub const COMMAND: u8 = 4;

const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_SYSTEM: u8 = 0x04;
/// Set means "keyboard not inhibited"; clear, Linux warns of an active keylock.
const STATUS_UNLOCKED: u8 = 0x10;
const STATUS_LAST_WAS_COMMAND: u8 = 0x08;
const CTR_KBD_INT: u8 = 0x01;
const CTR_KBD_DISABLED: u8 = 0x10;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_DISABLE_AUX: u8 = 0xa7;
const CMD_ENABLE_AUX: u8 = 0xa8;
const CMD_TEST_AUX: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_KBD: u8 = 0xab;
const CMD_DISABLE_KBD: u8 = 0xad;
const CMD_ENABLE_KBD: u8 = 0xae;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_RESET_CPU: u8 = 0xfe;
const SELF_TEST_OK: u8 = 0x55;
const KBD_ACK: u8 = 0xfa;
const KBD_RESET_OK: u8 = 0xaa;
/// Bound on queued output; a guest that never reads cannot grow it.
const MAX_OUTPUT: usize = 16;

pub struct I8042 {
    status: u8,
    ctr: u8,
    output: VecDeque<u8>,
    /// A command whose argument arrives on the data port next.
    pending: Option<u8>,
    irq: IrqLine,
    reset: IrqLine,
}

impl I8042 {
    pub fn new(irq: IrqLine, reset: IrqLine) -> Self {
        I8042 {
            status: STATUS_SYSTEM | STATUS_UNLOCKED,
            ctr: CTR_KBD_INT,
            output: VecDeque::new(),
            pending: None,
            irq,
            reset,
        }
    }

    fn push(&mut self, byte: u8) {
        if self.output.len() < MAX_OUTPUT {
            self.output.push_back(byte);
        }
        if self.ctr & CTR_KBD_INT != 0 && self.ctr & CTR_KBD_DISABLED == 0 {
            let _ = self.irq.trigger();
        }
    }

    pub fn read(&mut self, offset: u8) -> u8 {
        match offset {
            COMMAND => {
                let full = if self.output.is_empty() {
                    0
                } else {
                    STATUS_OUTPUT_FULL
                };
                self.status | full
            }
            DATA => self.output.pop_front().unwrap_or(0),
            _ => 0xff,
        }
    }

    pub fn write(&mut self, offset: u8, value: u8) {
        match offset {
            COMMAND => {
                self.status |= STATUS_LAST_WAS_COMMAND;
                self.command(value);
            }
            DATA => {
                self.status &= !STATUS_LAST_WAS_COMMAND;
                match self.pending.take() {
                    Some(CMD_WRITE_CTR) => self.ctr = value,
                    Some(_) => {}
                    // A byte for the keyboard itself: acknowledge it, and
                    // answer a reset with "self test passed".
                    None => {
                        self.push(KBD_ACK);
                        if value == 0xff {
                            self.push(KBD_RESET_OK);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn command(&mut self, cmd: u8) {
        match cmd {
            CMD_READ_CTR => self.push(self.ctr),
            CMD_WRITE_CTR | CMD_WRITE_OUTPUT_PORT => self.pending = Some(cmd),
            CMD_SELF_TEST => self.push(SELF_TEST_OK),
            CMD_TEST_KBD => self.push(0),
            CMD_TEST_AUX => self.push(0xff), // no aux port
            CMD_DISABLE_KBD => self.ctr |= CTR_KBD_DISABLED,
            CMD_ENABLE_KBD => self.ctr &= !CTR_KBD_DISABLED,
            CMD_DISABLE_AUX | CMD_ENABLE_AUX => {}
            CMD_READ_OUTPUT_PORT => self.push(0x01), // A20 on, not in reset
            CMD_RESET_CPU => {
                let _ = self.reset.trigger();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EventFd;

    fn dev() -> (I8042, EventFd) {
        let reset = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let irq = IrqLine(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        (I8042::new(irq, IrqLine(reset.try_clone().unwrap())), reset)
    }

    #[test]
    fn answers_the_linux_probe() {
        let (mut d, _) = dev();
        d.write(COMMAND, CMD_READ_CTR);
        assert_eq!(d.read(COMMAND) & STATUS_OUTPUT_FULL, 1);
        let ctr = d.read(DATA);
        assert_eq!(d.read(COMMAND) & STATUS_OUTPUT_FULL, 0);
        d.write(COMMAND, CMD_WRITE_CTR);
        d.write(DATA, ctr | 0x40);
        d.write(COMMAND, CMD_READ_CTR);
        assert_eq!(d.read(DATA), ctr | 0x40);
        d.write(COMMAND, CMD_SELF_TEST);
        assert_eq!(d.read(DATA), SELF_TEST_OK);
    }

    #[test]
    fn reset_command_raises_the_reset_line_and_output_is_bounded() {
        let (mut d, reset) = dev();
        for _ in 0..100 {
            d.write(COMMAND, CMD_SELF_TEST);
        }
        assert_eq!(d.output.len(), MAX_OUTPUT);
        assert!(reset.read().is_err(), "no reset yet");
        d.write(COMMAND, CMD_RESET_CPU);
        assert_eq!(reset.read().unwrap(), 1);
    }
}
