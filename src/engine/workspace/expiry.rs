//! Inactivity expiry and retention: when the reaper stops a workspace's VM
//! and when, much later, it may delete the workspace.
//!
//! The rule (docs/workspaces.md says the same):
//!
//! 1. A workspace is **active** while an operation holds its lock; every
//!    operation except `status`, `list` and `logs` stamps
//!    `last_activity_at` when it ends, and `expires_at` is
//!    `last_activity_at + ttl_seconds`.
//! 2. Past `expires_at` (by the wall clock), the next reaper pass stops its
//!    VM and keeps everything else: state `expired`, `expired_at` set. Any
//!    operation that needs the VM boots it again and clears `expired`.
//!    Stopping loses no file, so the wall clock alone may decide it.
//! 3. Deleting does lose files, so a wall clock that jumps (NTP, a
//!    suspended host, a wrong RTC) must never decide it alone. Each pass
//!    that finds the workspace expired advances its [`Evidence`]: seconds
//!    of CLOCK_BOOTTIME (which no one can set, and which counts suspend)
//!    between the reaper's own observations within one boot. Time between
//!    boots does not count (a new boot starts a new observation). The
//!    workspace is deleted only when **both** the wall clock
//!    (`now - expired_at`) and that evidence reach `retention_seconds`.
//!    A forward jump of years satisfies the first and not the second, so
//!    it deletes nothing; a backward jump delays deletion, never hastens it.
//!
//! [`decide`] is the rule as a pure function of a record and a [`Clock`].

use super::store::{Record, WorkspaceState};
use super::{now, EngineError, Result};
use serde::{Deserialize, Serialize};

/// How long an expired workspace keeps its disk by default: a week, so a
/// workspace left over a weekend or a holiday is still there.
pub const DEFAULT_RETENTION_SECONDS: u64 = 7 * 24 * 3600;
/// The longest retention a workspace may ask for: a year. A workspace
/// nobody touches for longer is abandoned; its disk should come back.
pub const MAX_RETENTION_SECONDS: u64 = 365 * 24 * 3600;
/// Environment variable overriding [`DEFAULT_RETENTION_SECONDS`] for new
/// workspaces (the operator's default; `retention_seconds` wins).
pub const RETENTION_ENV: &str = "PYRO_WORKSPACE_RETENTION_SECONDS";
/// Evidence is written back at most this often per workspace (each write
/// is an fsync): nothing is lost by waiting, as the next write adds the
/// whole interval; a reboot in between costs at most this much evidence.
pub const EVIDENCE_STEP_SECONDS: f64 = 60.0;

/// The reaper's own measure of the time a workspace has been expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The boot (`/proc/sys/kernel/random/boot_id`) of the last observation.
    pub boot_id: String,
    /// CLOCK_BOOTTIME seconds at the last observation.
    pub boottime: f64,
    /// Seconds measured between observations since expiry.
    pub elapsed_seconds: f64,
}

/// The host's clocks at one reaper pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Clock {
    /// Wall-clock seconds since the epoch (can jump).
    pub wall: f64,
    pub boot_id: String,
    /// CLOCK_BOOTTIME seconds (monotonic within one boot, counts suspend).
    pub boottime: f64,
}

impl Clock {
    pub fn now() -> Clock {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec we own.
        let boottime = if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } == 0 {
            ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
        } else {
            0.0
        };
        Clock {
            wall: now(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            boottime,
        }
    }
}

/// What the reaper does with one workspace.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Keep,
    /// Inactive for its TTL: stop the VM, keep the disk, state `expired`.
    Expire,
    /// Expired, retention not over: store the newer evidence.
    Observe(Evidence),
    /// Retention over by the wall clock and by the reaper's own evidence.
    Delete,
}

/// `old` advanced to the observation `c`.
pub fn advance(old: Option<&Evidence>, c: &Clock) -> Evidence {
    let elapsed = match old {
        Some(o) if o.boot_id == c.boot_id && c.boottime >= o.boottime => {
            o.elapsed_seconds + (c.boottime - o.boottime)
        }
        // Another boot: the time in between is unknown and does not count.
        Some(o) => o.elapsed_seconds,
        None => 0.0,
    };
    Evidence {
        boot_id: c.boot_id.clone(),
        boottime: c.boottime,
        elapsed_seconds: elapsed,
    }
}

/// The rule of the module doc for record `r` at clock `c`. Records being
/// created are not the reaper's business here (see `reap_expired`).
pub fn decide(r: &Record, c: &Clock) -> Decision {
    match r.state {
        WorkspaceState::Creating => Decision::Keep,
        WorkspaceState::Expired => {
            let retention = r.retention_seconds as f64;
            let ev = advance(r.expiry_evidence.as_ref(), c);
            let wall_over = r.expired_at.is_some_and(|t| c.wall - t >= retention);
            if wall_over && ev.elapsed_seconds >= retention {
                return Decision::Delete;
            }
            let worth_writing = match &r.expiry_evidence {
                None => true,
                Some(o) => {
                    o.boot_id != ev.boot_id
                        || o.boottime > ev.boottime
                        || ev.elapsed_seconds - o.elapsed_seconds >= EVIDENCE_STEP_SECONDS
                }
            };
            if worth_writing {
                Decision::Observe(ev)
            } else {
                Decision::Keep
            }
        }
        _ => {
            if c.wall >= r.last_activity_at + r.ttl_seconds as f64 {
                Decision::Expire
            } else {
                Decision::Keep
            }
        }
    }
}

/// Marks `r` expired at `c` (its VM already stopped).
pub fn mark_expired(r: &mut Record, c: &Clock) {
    r.state = WorkspaceState::Expired;
    r.vmm_pid = None;
    r.expired_at = Some(c.wall);
    r.expiry_evidence = Some(advance(None, c));
    r.last_error = None;
}

/// Forgets an expiry (the workspace is in use again).
pub fn clear_expiry(r: &mut Record) {
    r.expired_at = None;
    r.expiry_evidence = None;
}

/// The earliest wall-clock time an expired workspace may be deleted.
pub fn delete_after(r: &Record) -> Option<f64> {
    r.expired_at
        .filter(|_| r.state == WorkspaceState::Expired)
        .map(|t| t + r.retention_seconds as f64)
}

/// The retention of a new workspace: the request's, else the operator's
/// default ([`RETENTION_ENV`]), else [`DEFAULT_RETENTION_SECONDS`].
pub fn retention_for(requested: Option<u64>) -> Result<u64> {
    let v = match requested {
        Some(v) => v,
        None => match std::env::var(RETENTION_ENV) {
            Ok(s) if !s.trim().is_empty() => s.trim().parse().map_err(|_| {
                EngineError::Invalid(format!(
                    "{RETENTION_ENV} must be a number of seconds from 0 to {MAX_RETENTION_SECONDS}, got {s:?}"
                ))
            })?,
            _ => DEFAULT_RETENTION_SECONDS,
        },
    };
    EngineError::check_range("retention_seconds", v, 0, MAX_RETENTION_SECONDS)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: f64 = 3600.0;
    const DAY: f64 = 24.0 * HOUR;
    /// 2026-12-01 00:00 UTC.
    const T0: f64 = 1_795_996_800.0;

    fn record(ttl: u64, retention: u64) -> Record {
        let mut r = super::super::store::sample_record("0123456789ab");
        r.ttl_seconds = ttl;
        r.retention_seconds = retention;
        r.created_at = T0 - DAY;
        r.stamp_activity(T0);
        r
    }

    fn clock(wall: f64, boot: &str, boottime: f64) -> Clock {
        Clock {
            wall,
            boot_id: boot.into(),
            boottime,
        }
    }

    /// Runs reaper passes at `clocks` on `r`, applying each decision as
    /// `reap_expired` does; returns the decisions.
    fn passes(r: &mut Record, clocks: &[Clock]) -> Vec<Decision> {
        clocks
            .iter()
            .map(|c| {
                let d = decide(r, c);
                match &d {
                    Decision::Expire => mark_expired(r, c),
                    Decision::Observe(ev) => r.expiry_evidence = Some(ev.clone()),
                    _ => {}
                }
                d
            })
            .collect()
    }

    #[test]
    fn the_ttl_counts_from_the_last_activity_not_from_creation() {
        let mut r = record(600, 7 * 24 * 3600);
        // Created a day ago, active just now: not expired.
        assert_eq!(decide(&r, &clock(T0 + 599.0, "b", 1000.0)), Decision::Keep);
        assert_eq!(
            decide(&r, &clock(T0 + 600.0, "b", 1001.0)),
            Decision::Expire
        );
        // Activity pushes it back.
        r.stamp_activity(T0 + 550.0);
        assert_eq!(r.expires_at, T0 + 1150.0);
        assert_eq!(decide(&r, &clock(T0 + 1000.0, "b", 1400.0)), Decision::Keep);
    }

    #[test]
    fn expiry_stops_and_keeps_then_retention_deletes_by_both_clocks() {
        let week = 7 * 24 * 3600;
        let mut r = record(600, week);
        let boot = 10_000.0;
        let d = passes(
            &mut r,
            &[
                clock(T0 + 700.0, "b", boot),
                // Expired, within retention: kept, evidence grows.
                clock(T0 + 700.0 + DAY, "b", boot + DAY),
                clock(T0 + 700.0 + 3.0 * DAY, "b", boot + 3.0 * DAY),
                // A moment later: nothing worth an fsync.
                clock(T0 + 700.0 + 3.0 * DAY + 1.0, "b", boot + 3.0 * DAY + 1.0),
            ],
        );
        assert_eq!(d[0], Decision::Expire);
        assert_eq!(r.state, WorkspaceState::Expired);
        assert_eq!(r.expired_at, Some(T0 + 700.0));
        assert!(matches!(d[1], Decision::Observe(_)), "{d:?}");
        assert!(matches!(d[2], Decision::Observe(_)), "{d:?}");
        assert_eq!(d[3], Decision::Keep);
        assert_eq!(
            r.expiry_evidence.as_ref().unwrap().elapsed_seconds,
            3.0 * DAY
        );
        assert_eq!(delete_after(&r), Some(T0 + 700.0 + week as f64));
        // A week after expiry by both clocks: deleted.
        let late = clock(T0 + 700.0 + 7.0 * DAY, "b", boot + 7.0 * DAY);
        assert_eq!(decide(&r, &late), Decision::Delete);
        // One second short by either clock: kept.
        let early = clock(T0 + 699.0 + 7.0 * DAY, "b", boot + 7.0 * DAY);
        assert_ne!(decide(&r, &early), Decision::Delete);
        let early = clock(T0 + 700.0 + 7.0 * DAY, "b", boot + 7.0 * DAY - 1.0);
        assert_ne!(decide(&r, &early), Decision::Delete);
    }

    #[test]
    fn a_forward_clock_jump_of_years_deletes_nothing() {
        let mut r = record(600, 7 * 24 * 3600);
        let jump = 20.0 * 365.0 * DAY;
        let boot = 500.0;
        // The first pass after the jump stops the VM (nothing is lost);
        // passes after it, a few seconds and minutes of real time later,
        // delete nothing, however far the wall clock says it went.
        let d = passes(
            &mut r,
            &[
                clock(T0 + jump, "b", boot),
                clock(T0 + jump + 5.0, "b", boot + 5.0),
                clock(T0 + 2.0 * jump, "b", boot + 65.0),
                clock(T0 + 3.0 * jump, "b", boot + 3600.0),
            ],
        );
        assert_eq!(d[0], Decision::Expire);
        assert!(!d.contains(&Decision::Delete), "{d:?}");
        // What the reaper measured: the hour of uptime, not the years.
        assert_eq!(r.expiry_evidence.as_ref().unwrap().elapsed_seconds, 3600.0);
    }

    #[test]
    fn time_between_boots_does_not_count_and_a_backward_jump_only_delays() {
        let mut r = record(600, 2 * 24 * 3600);
        let d = passes(
            &mut r,
            &[
                clock(T0 + 700.0, "a", 1000.0),
                clock(T0 + 700.0 + DAY, "a", 1000.0 + DAY),
                // Rebooted: a month later by the wall clock, 10 s of uptime.
                clock(T0 + 30.0 * DAY, "b", 10.0),
                clock(T0 + 30.0 * DAY + 1.5 * DAY, "b", 10.0 + 0.5 * DAY),
            ],
        );
        assert!(!d.contains(&Decision::Delete), "{d:?}");
        assert_eq!(
            r.expiry_evidence.as_ref().unwrap().elapsed_seconds,
            1.5 * DAY
        );
        // Two days measured: now it goes.
        let c = clock(T0 + 32.0 * DAY, "b", 10.0 + DAY);
        assert_eq!(decide(&r, &c), Decision::Delete);
        // The wall clock set back before the expiry keeps it.
        let c = clock(T0, "b", 10.0 + 3.0 * DAY);
        assert_ne!(decide(&r, &c), Decision::Delete);
    }

    #[test]
    fn retention_zero_deletes_on_the_pass_after_expiry() {
        let mut r = record(1, 0);
        let d = passes(
            &mut r,
            &[clock(T0 + 2.0, "b", 50.0), clock(T0 + 2.0, "b", 50.0)],
        );
        assert_eq!(d, [Decision::Expire, Decision::Delete]);
    }

    #[test]
    fn retention_is_bounded_and_has_an_operator_default() {
        assert_eq!(retention_for(Some(0)).unwrap(), 0);
        assert_eq!(
            retention_for(Some(MAX_RETENTION_SECONDS)).unwrap(),
            MAX_RETENTION_SECONDS
        );
        let e = retention_for(Some(MAX_RETENTION_SECONDS + 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention_seconds"), "{e}");
    }

    #[test]
    fn the_host_clock_reads_a_boot_and_a_boottime() {
        let a = Clock::now();
        let b = Clock::now();
        assert!(!a.boot_id.is_empty());
        assert_eq!(a.boot_id, b.boot_id);
        assert!(a.boottime > 0.0 && b.boottime >= a.boottime);
    }
}
