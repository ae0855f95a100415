//! CPU time and resident memory of a process, read from Linux `/proc`, to put a cost per request on each party of a run.

use std::time::Duration;

/// `/proc` reports CPU time in clock ticks of `USER_HZ`, which Linux fixes at 100 for user space.
const USER_HZ: u64 = 100;

/// Total user + system CPU time of process `pid` (all threads), or `None` if it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state(3) ppid(4) ... utime is field 14, stime field 15, i.e. the 12th and 13th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// Resident set size of process `pid` in bytes (`VmRSS`), or `None` if it is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A process whose cost the run reports (`--cpu-pid server=1234`).
#[derive(Debug, Clone)]
pub struct Watched {
    /// Name in the report ("server", "broker", …).
    pub label: String,
    pub pid: u32,
    /// CPU time when the load started.
    pub cpu_start: Option<Duration>,
    /// CPU time when the load ended.
    pub cpu_end: Option<Duration>,
    /// Largest resident set size sampled during the run.
    pub peak_rss: u64,
    /// Resident set size at the end of the run.
    pub end_rss: u64,
}

impl Watched {
    pub fn parse(spec: &str) -> anyhow::Result<Watched> {
        let (label, pid) =
            spec.split_once('=').ok_or_else(|| anyhow::anyhow!("--cpu-pid wants LABEL=PID, got {spec}"))?;
        let pid: u32 =
            pid.trim().parse().map_err(|_| anyhow::anyhow!("--cpu-pid {spec}: PID is not a number"))?;
        if cpu_time(pid).is_none() {
            anyhow::bail!("--cpu-pid {spec}: no such process");
        }
        Ok(Watched {
            label: label.trim().to_string(),
            pid,
            cpu_start: None,
            cpu_end: None,
            peak_rss: 0,
            end_rss: 0,
        })
    }

    pub fn own() -> Watched {
        Watched {
            label: "driver".to_string(),
            pid: std::process::id(),
            cpu_start: None,
            cpu_end: None,
            peak_rss: 0,
            end_rss: 0,
        }
    }

    pub fn start(&mut self) {
        self.cpu_start = cpu_time(self.pid);
        self.sample();
    }

    pub fn sample(&mut self) {
        if let Some(rss) = rss_bytes(self.pid) {
            self.peak_rss = self.peak_rss.max(rss);
            self.end_rss = rss;
        }
    }

    pub fn stop(&mut self) {
        self.cpu_end = cpu_time(self.pid);
        self.sample();
    }

    /// CPU used between `start` and `stop`.
    pub fn cpu_used(&self) -> Option<Duration> {
        Some(self.cpu_end?.saturating_sub(self.cpu_start?))
    }
}
