//! A cgroup v2 directory for a cgroup program to attach to: find it (a name, or a
//! path inside the cgroup v2 hierarchy), create it when it is missing and remove
//! it on exit only if we created it, and start commands inside it.
//!
//! A created cgroup is recorded in `/run/ebpf-workshop/` with the creator's pid,
//! so that a later run can tell the leftover of a killed run (and `cleanup`
//! removes it) from a cgroup that someone else made (never removed).

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};

/// Where systemd mounts the cgroup v2 hierarchy on most distributions.
pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";
/// Where the created cgroups are recorded.
pub const RECORD_DIR: &str = "/run/ebpf-workshop";

/// A cgroup v2 directory. Dropping it removes the directory if this process
/// created it (and says so when processes still in it keep it alive).
pub struct Cgroup {
    name: String,
    path: PathBuf,
    dir: File,
    created: bool,
}

impl Cgroup {
    /// The cgroup `spec` names (see [`resolve`]), created if it does not exist.
    /// Refuses one that a running or killed earlier run created.
    pub fn open_or_create(spec: &str) -> Result<Cgroup> {
        let path = resolve(spec)?;
        let record = record_path(&path);
        let created = if path.exists() {
            if !path.is_dir() {
                bail!("{} is a file of a cgroup, not a cgroup directory", path.display());
            }
            match read_record(&record) {
                Some(owner) if owner.alive() => bail!(
                    "cgroup {} belongs to a running {} (pid {}): stop that one first \
                     (Ctrl-C), or pick another name",
                    path.display(),
                    owner.name(),
                    owner.pid
                ),
                Some(owner) => bail!(
                    "cgroup {} was left by an earlier run (pid {}) that was killed: remove it \
                     with --cleanup",
                    path.display(),
                    owner.pid
                ),
                None => false, // someone else's: used, never removed
            }
        } else {
            let _ = fs::remove_file(&record); // a record without its cgroup is stale
            fs::create_dir(&path).with_context(|| match path.parent() {
                Some(p) if !p.exists() => format!(
                    "creating cgroup {}: its parent {} does not exist",
                    path.display(),
                    p.display()
                ),
                _ => format!("creating cgroup {}", path.display()),
            })?;
            if let Err(e) = write_record(&record) {
                let _ = fs::remove_dir(&path);
                return Err(e);
            }
            true
        };
        let dir = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Cgroup { name: spec.to_string(), path, dir, created })
    }

    /// The cgroup as the user named it (`demo`), for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory, e.g. `/sys/fs/cgroup/demo`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An open file descriptor of the directory: what `attach_cgroup` takes.
    pub fn fd(&self) -> i32 {
        std::os::fd::AsRawFd::as_raw_fd(&self.dir)
    }

    /// The cgroup id, as `bpf_skb_cgroup_id()` reports it: on cgroup v2 it is the
    /// directory's inode number.
    pub fn id(&self) -> u64 {
        self.dir.metadata().map(|m| m.ino()).unwrap_or(0)
    }

    /// Did this process create it (and so removes it on exit)?
    pub fn created(&self) -> bool {
        self.created
    }

    /// Start `argv` inside the cgroup: the child joins it before it runs the
    /// command, so not one of its packets escapes the cgroup's programs.
    pub fn spawn(&self, argv: &[String]) -> Result<Child> {
        let (program, args) = argv.split_first().context("no command to run")?;
        let procs = OpenOptions::new()
            .write(true)
            .open(self.path.join("cgroup.procs"))
            .with_context(|| format!("opening {}/cgroup.procs", self.path.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        // Between fork and exec, in the child: writing "0" to cgroup.procs moves the
        // writer itself into the cgroup. SAFETY: write(2) is async-signal-safe, and
        // the file was opened before the fork (nothing is allocated here).
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::write(&procs, b"0").map(drop).map_err(std::io::Error::from)
            });
        }
        cmd.spawn().map_err(|e| match e.kind() {
            ErrorKind::NotFound => {
                anyhow::anyhow!("cannot run `{program}`: not found (is it installed, and on PATH?)")
            }
            _ => anyhow::anyhow!("cannot run `{program}` in cgroup {}: {e}", self.path.display()),
        })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if !self.created {
            return;
        }
        match remove(&self.path) {
            Ok(()) => eprintln!("removed cgroup {}", self.name),
            Err(e) => eprintln!("{e:#}"),
        }
    }
}

/// `--cleanup`: remove the cgroup that a killed earlier run created, and say what
/// happened. A cgroup we did not create is left alone.
pub fn cleanup(spec: &str) -> Result<()> {
    let path = resolve(spec)?;
    let record = record_path(&path);
    if !path.exists() {
        let _ = fs::remove_file(&record);
        println!("nothing to clean up: there is no cgroup {}", path.display());
        return Ok(());
    }
    match read_record(&record) {
        None => bail!(
            "cgroup {} was not created by an example (no record in {RECORD_DIR}): it is \
             left alone; `rmdir {}` removes it once it is empty",
            path.display(),
            path.display()
        ),
        Some(owner) if owner.alive() => bail!(
            "cgroup {} belongs to a running {} (pid {}): stop it (Ctrl-C) and it removes \
             the cgroup itself",
            path.display(),
            owner.name(),
            owner.pid
        ),
        Some(_) => remove(&path)?,
    }
    println!("removed cgroup {}, left by an earlier run that was killed", path.display());
    Ok(())
}

/// The cgroup directory `spec` names: a name (or relative path) under the cgroup v2
/// mount, or an absolute path inside it. One sentence for everything else.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let given = Path::new(spec);
    if spec.is_empty() || given.components().any(|c| c == Component::ParentDir) {
        bail!("{spec:?} is not a cgroup name: use a name like `demo`, or a path without `..`");
    }
    let mounts = cgroup2_mounts();
    let Some(main) = mounts.iter().find(|m| m.as_os_str() == CGROUP_MOUNT).or(mounts.first())
    else {
        bail!(
            "this machine has no cgroup v2 hierarchy mounted (cgroup programs attach to cgroup \
             v2 directories): mount one, e.g. `sudo mkdir -p /mnt/cgroup2 && sudo mount \
             -t cgroup2 none /mnt/cgroup2`, and pass a path below it"
        );
    };
    let path = if given.is_absolute() {
        given.components().collect::<PathBuf>() // without "." and doubled slashes
    } else {
        main.join(given.components().filter(|c| *c != Component::CurDir).collect::<PathBuf>())
    };
    // The file system of the nearest directory that exists says where we are.
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let fs_type = statfs(existing).map(|s| s.filesystem_type());
    if fs_type != Ok(CGROUP2_SUPER_MAGIC) {
        let v2 = mounts.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(", ");
        if fs_type == Ok(CGROUP_SUPER_MAGIC) {
            bail!(
                "{} is in a cgroup v1 hierarchy, and cgroup programs attach to cgroup v2 \
                 only: give a name, or a path below {v2}",
                path.display()
            );
        }
        bail!(
            "{} is not inside the cgroup v2 hierarchy ({v2}): give a name, or a path below it",
            path.display()
        );
    }
    if mounts.contains(&path) {
        bail!(
            "{} is the root cgroup, which holds every process: give a cgroup below it, like \
             {}",
            path.display(),
            path.join("demo").display()
        );
    }
    Ok(path)
}

/// Where cgroup v2 is mounted (usually only /sys/fs/cgroup; /sys/fs/cgroup/unified
/// on systems that still mount cgroup v1 controllers too), from the mount table.
fn cgroup2_mounts() -> Vec<PathBuf> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| {
            // "<id> <parent> <dev> <root> <mount point> <options...> - <fs type> ..."
            let (fields, fs) = line.split_once(" - ")?;
            let mount_point = fields.split(' ').nth(4)?;
            (fs.split(' ').next() == Some("cgroup2")).then(|| PathBuf::from(mount_point))
        })
        .filter(|p| statfs(p).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC))
        .collect()
}

/// Remove an empty cgroup. Processes that just exited may take a moment to leave
/// it; ones that still run keep it, and the error names them.
fn remove(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::NotFound => break,
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                if Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let pids = processes(path);
                if pids.is_empty() {
                    bail!(
                        "cgroup {} has cgroups below it and is left in place: remove them \
                         (rmdir), then run again with --cleanup",
                        path.display()
                    );
                }
                bail!(
                    "cgroup {} still has processes in it (pids {}) and is left in place: end \
                     them (`kill {}`), then run again with --cleanup",
                    path.display(),
                    pids.join(", "),
                    pids.join(" ")
                );
            }
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    let _ = fs::remove_file(record_path(path));
    Ok(())
}

/// The pids in a cgroup.
fn processes(path: &Path) -> Vec<String> {
    let procs = fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
    procs.lines().map(str::to_string).collect()
}

/// Who created a cgroup: a pid, and that process's start time (so that a new
/// process that got the same pid is not taken for it).
struct Owner {
    pid: i32,
    start: u64,
}

impl Owner {
    fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }

    /// Its command name ("cgroup_firewall", "sock_lb"), for messages.
    fn name(&self) -> String {
        let comm = fs::read_to_string(format!("/proc/{}/comm", self.pid)).unwrap_or_default();
        comm.trim().to_string()
    }
}

/// The process's start time, field 22 of /proc/<pid>/stat (after the command name
/// in parentheses, which may contain spaces).
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// `/run/ebpf-workshop/cgroup-<path>.pid`, the path's slashes escaped.
pub fn record_path(cgroup: &Path) -> PathBuf {
    let name = cgroup.to_string_lossy().replace('%', "%25").replace('/', "%2F");
    Path::new(RECORD_DIR).join(format!("cgroup-{name}.pid"))
}

fn write_record(record: &Path) -> Result<()> {
    let pid = std::process::id() as i32;
    let start = start_time(pid).context("reading this process's start time")?;
    fs::create_dir_all(RECORD_DIR)
        .and_then(|()| fs::write(record, format!("{pid} {start}\n")))
        .with_context(|| format!("recording the created cgroup in {}", record.display()))
}

fn read_record(record: &Path) -> Option<Owner> {
    let text = fs::read_to_string(record).ok()?;
    let (pid, start) = text.trim().split_once(' ')?;
    Some(Owner { pid: pid.parse().ok()?, start: start.parse().ok()? })
}
