"""A private systemd (PID 1 of new pid, mount, net, cgroup, uts and ipc namespaces) to run a unit.

Where the machine does not run systemd (a container whose PID 1 is something else, like the
development VMs), ``systemd-run`` cannot be used. But as root, with Debian's systemd package
installed, systemd itself can be started as PID 1 of fresh namespaces: it then runs the unit
that ``edge build`` wrote with every sandboxing directive applied for real (DynamicUser,
ProtectSystem, SystemCallFilter, MemoryDenyWriteExecute, ...), on its own loopback network.

Isolation from the host: the root is an overlay of / whose writes go to a tmpfs (an early
version that shared the host's / let the container's boot-time ``systemd-tmpfiles --remove``
empty the host's /tmp); /sys is read-only; /dev holds only the pseudo devices;
only the unit is started (no sysinit.target: no tmpfiles, sysctl or udev). What remains on the
host is one cgroup, removed afterwards.

Used by tests/test_build.py; :func:`unavailable` says why it cannot run here, or None.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SYSTEMD = Path("/lib/systemd/systemd")

_INNER = r"""
set -e
mount --make-rprivate /
# Everything happens on an overlay of / whose writes go to a tmpfs: whatever systemd or the
# service writes (or removes) never reaches the host's files.
mount -t tmpfs tmpfs "$WORK"
mkdir -p "$WORK/upper" "$WORK/ovl" "$WORK/root"
R="$WORK/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$WORK/upper,workdir=$WORK/ovl" "$R"
# proc stays as it is: an over-mount (a read-only /proc/sys) would keep the service, which runs in
# a user namespace (PrivateUsers=yes), from mounting its own proc (ProtectProc=) -> 226/NAMESPACE.
mount -t proc proc "$R/proc"
mount -t sysfs -o ro sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=0755 tmpfs "$R/dev"
for node in null zero full random urandom tty; do
    touch "$R/dev/$node" && mount --bind "/dev/$node" "$R/dev/$node"
done
mkdir -p "$R/dev/shm" "$R/dev/pts" && mount -t tmpfs tmpfs "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts" && ln -s pts/ptmx "$R/dev/ptmx"  # PrivateDevices= needs them
touch "$R/dev/console" && mount --bind "$LOG" "$R/dev/console"  # systemd logs to the console
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mkdir -p "$R/run/systemd/system/$NAME.service.d" "$R/opt/$NAME" "$R/etc/default"
cp "$BINARY" "$R/opt/$NAME/$NAME"
if [ -n "$ENVFILE" ]; then
    install -m 0600 /dev/null "$R/etc/default/$NAME"
    printf '%s\n' "$ENVFILE" > "$R/etc/default/$NAME"
fi
cp "$UNIT" "$R/run/systemd/system/$NAME.service"
# Only the unit, none of the boot (no sysinit.target: no tmpfiles, sysctl or udev), and its
# output in a file since no journald runs. The sandboxing directives are the unit's own.
printf '[Unit]\nDefaultDependencies=no\n[Service]\nStandardOutput=file:/run/edge-check.out\nStandardError=inherit\n' \
    > "$R/run/systemd/system/$NAME.service.d/check.conf"
printf '[Unit]\nDescription=edge unit check\nDefaultDependencies=no\nWants=%s.service\n' "$NAME" \
    > "$R/run/systemd/system/edge-check.target"
ip link set lo up
cd "$R" && mkdir -p .old-root && pivot_root . .old-root && umount -l /.old-root
exec env container=edge-check /lib/systemd/systemd --system --unit=edge-check.target --log-target=console --log-level=info
"""


def unavailable() -> str | None:
    """Why a private systemd cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root to start systemd in new namespaces"
    if Path("/run/systemd/system").exists():
        return "this machine runs systemd: check the unit there with systemctl instead"
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux / iproute2)"
    if not SYSTEMD.exists():
        return f"needs {SYSTEMD} (Debian package systemd: apt-get install systemd)"
    if _cgroup_root() is None:
        return "needs a writable cgroup v2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified)"
    return None


def _cgroup_root() -> Path | None:
    for root in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            return root
    return None


class Sandbox:
    """``with Sandbox(binary, unit, name, log) as sd: sd.run(...)``: runs the unit in its namespaces."""

    def __init__(self, binary: Path, unit: Path, name: str, work: Path, *, env_file: str = ""):
        self.binary, self.unit, self.name, self.env_file = binary, unit, name, env_file
        #: an empty folder: a tmpfs is mounted on it inside the namespaces (the overlay's writes)
        self.work = work / "sandbox"
        self.work.mkdir()
        #: systemd's own console output (warnings and errors)
        self.log_path = work / "systemd.log"
        self.cgroup = _cgroup_root() / f"edge-check-{os.getpid()}"
        self.proc: subprocess.Popen | None = None
        self.pid1: int | None = None

    def __enter__(self) -> "Sandbox":
        self.cgroup.mkdir(exist_ok=True)
        env = {**os.environ, "NAME": self.name, "BINARY": str(self.binary), "UNIT": str(self.unit),
               "ENVFILE": self.env_file, "WORK": str(self.work), "LOG": str(self.log_path)}
        launcher = (f'echo $$ > {self.cgroup}/cgroup.procs && exec unshare --cgroup --pid --fork --mount '
                    '--net --uts --ipc sh -c "$INNER"')
        self._log = open(self.log_path, "w")  # created before the namespaces bind it as /dev/console
        self.proc = subprocess.Popen(["sh", "-c", launcher], env={**env, "INNER": _INNER},
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.pid1 is None:
            self.pid1 = self._find_pid1()
            time.sleep(0.1)
        if self.pid1 is None:
            self.__exit__()
            raise AssertionError("systemd did not start in the sandbox:\n" + self.output())
        return self

    def _find_pid1(self) -> int | None:
        """systemd's pid here: the child of unshare (PID 1 in the new pid namespace)."""
        for task in Path("/proc").glob("[0-9]*"):
            try:
                stat = (task / "stat").read_text()
                cmd = (task / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == self.proc.pid and cmd == str(SYSTEMD).encode():
                return int(task.name)
        return None

    def run(self, *argv: str, namespaces: str = "-a", timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a command in the sandbox (all its namespaces; ``-n`` for the network only)."""
        return subprocess.run(["nsenter", "-t", str(self.pid1), namespaces, *argv], capture_output=True,
                              text=True, timeout=timeout)

    def python(self, code: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """This test's Python, on the sandbox's network (its loopback is the service's)."""
        return self.run(sys.executable, "-c", code, namespaces="-n", timeout=timeout)

    def show(self, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", self.name, *(f"-p{p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def service_output(self) -> str:
        """What the service printed (stdout and stderr)."""
        return self.run("cat", "/run/edge-check.out").stdout

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def __exit__(self, *exc) -> None:
        if self.pid1 is not None:
            self.run("systemctl", "poweroff", timeout=10)
        if self.proc is not None:
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                if self.pid1 is not None:
                    os.kill(self.pid1, 9)  # PID 1 of the namespace: every process in it goes too
                self.proc.wait(10)
            self._log.close()
        for sub in sorted(self.cgroup.rglob("*"), key=lambda p: -len(p.parts)) if self.cgroup.exists() else ():
            if sub.is_dir():
                try:
                    sub.rmdir()
                except OSError:
                    pass
        try:
            self.cgroup.rmdir()
        except OSError:
            pass
