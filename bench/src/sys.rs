//! Operating-system helpers: file limits, /proc readings, CPU time and
//! random bytes.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit
/// in force afterwards.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit and setrlimit only read or write the struct passed.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
        r.rlim_cur as u64
    }
}

/// Keeps freed heap memory instead of returning it to the kernel, so the
/// TLS session's per-record buffers do not page-fault on every reuse.
pub fn keep_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tunables.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime (fields 14 and 15, in clock ticks) of a `/proc/PID/stat`
/// line. The command name (field 2) may hold spaces and parentheses, so the
/// fields are counted from after the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    parse_stat_split(stat).map(|(u, s)| u + s)
}

/// utime and stime, apart.
pub fn parse_stat_split(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state), so field 14 is index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// The server's `/proc` files, opened once before the run so that reading
/// them later needs no file descriptor (the run may use them all up).
pub struct Server {
    stat: (String, File),
    status: (String, File),
}

fn read_whole(what: &(String, File)) -> Result<String, String> {
    let (path, file) = what;
    let mut out = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        let n = file
            .read_at(&mut chunk, out.len() as u64)
            .map_err(|e| format!("{path}: {e}"))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(out).map_err(|_| format!("{path}: not UTF-8"))
}

impl Server {
    pub fn open(pid: u32) -> Result<Server, String> {
        let open = |name: &str| {
            let path = format!("/proc/{pid}/{name}");
            File::open(&path)
                .map(|f| (path.clone(), f))
                .map_err(|e| format!("--pid {pid}: {path}: {e}"))
        };
        let s = Server {
            stat: open("stat")?,
            status: open("status")?,
        };
        s.cpu_s()?;
        Ok(s)
    }

    /// CPU seconds (user + system) the server has used.
    pub fn cpu_s(&self) -> Result<f64, String> {
        let s = read_whole(&self.stat)?;
        let ticks =
            parse_stat_ticks(&s).ok_or_else(|| format!("{}: unexpected format", self.stat.0))?;
        Ok(ticks as f64 / clock_ticks())
    }

    /// CPU seconds the server has used in user space (the rest of
    /// [`Server::cpu_s`] is the kernel's, on loopback much of it the
    /// receiving side's TCP work).
    pub fn user_cpu_s(&self) -> Result<f64, String> {
        let s = read_whole(&self.stat)?;
        let (user, _) =
            parse_stat_split(&s).ok_or_else(|| format!("{}: unexpected format", self.stat.0))?;
        Ok(user as f64 / clock_ticks())
    }

    /// The server's `VmRSS` in KiB.
    pub fn rss_kib(&self) -> Result<u64, String> {
        read_whole(&self.status)?
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("{}: no VmRSS", self.status.0))
    }
}

/// CPU seconds (user + system) this process has used.
pub fn self_cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct passed.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    }
}

/// Fills `buf` from the kernel's random source.
fn os_random(buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled part of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(buf))
                .is_ok();
        }
        done += n as usize;
    }
    true
}

/// A small fast generator (splitmix64) for WebSocket keys and masks; these
/// need to be unpredictable to intermediaries, not cryptographically strong.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let mut seed = [0u8; 8];
        if !os_random(&mut seed) {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            seed = (t.as_nanos() as u64 ^ u64::from(std::process::id())).to_le_bytes();
        }
        Rng(u64::from_le_bytes(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stat_with_spaces_in_comm() {
        let s =
            "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 1 0 42 0 0";
        assert_eq!(super::parse_stat_ticks(s), Some(22));
        assert_eq!(super::parse_stat_ticks("1 (x) S 1 2"), None);
    }
}
