"""Install the plugin's Python packages into QGIS's own Python, the way qpip does.

Packages go to ``<profile>/python/dependencies/<X.Y>`` (the qpip convention: plugin updates do not
wipe it, qpip users share it), which is *appended* to ``sys.path`` so the packages QGIS ships always
win. pip runs with a constraints file pinning the packages QGIS already has (numpy first), and the
copies pip still puts in the target are removed afterwards, so there is never a second numpy. pip
runs as a subprocess of the real Python interpreter (``sys.executable`` is the QGIS binary on
Windows and macOS, qgis/QGIS#66672), without a shell, its output streamed line by line.

No QGIS import here: the GUI passes the profile folder in and shows the lines this module logs.
"""

from __future__ import annotations

import importlib
import os
import queue
import re
import shutil
import subprocess  # nosec B404
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import importlib.metadata

REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "requirements.txt"
#: Packages onnxruntime (1.17 to 1.2x) depends on that QGIS's Python often ships itself: pinned to
#: the version QGIS has, and never left in the target (where they would be shadowed anyway).
SHARED_PACKAGES = ("numpy", "packaging", "protobuf", "flatbuffers", "sympy", "mpmath", "coloredlogs",
                   "humanfriendly")
#: One of these provides ``import onnxruntime``; they shadow each other when two are installed.
ONNXRUNTIME_VARIANTS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml")
GPU_CUDA = "onnxruntime-gpu[cuda,cudnn]>=1.21,<2"  # the extras bring CUDA 12 and cuDNN 9 as wheels
GPU_DIRECTML = "onnxruntime-directml>=1.17,<2"
_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?)?(\.exe)?$", re.IGNORECASE)
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console window flashing on Windows


class InstallError(RuntimeError):
    """The installation cannot run or failed; the message says what to do."""


def dependencies_folder(profile_dir: str | Path, version: tuple[int, ...] = sys.version_info[:2]) -> Path:
    """``<profile>/python/dependencies/<X.Y>``: per Python version, as qpip does."""
    return Path(profile_dir) / "python" / "dependencies" / f"{version[0]}.{version[1]}"


def add_to_sys_path(folder: str | Path) -> bool:
    """Append ``folder`` to ``sys.path`` (after QGIS's own packages); False if already there.

    Appended even before it exists, so an install made later in the session is importable at once.
    """
    entry = str(folder)
    if entry in sys.path:
        return False
    sys.path.append(entry)
    return True


def python_interpreter(executable: str | None = None, prefix: str | None = None,
                       platform: str | None = None, version: tuple[int, ...] = sys.version_info[:2]) -> Path:
    """The Python interpreter that can run pip for the running Python (qpip's resolution, stricter).

    Inside QGIS ``sys.executable`` is not to be trusted: on Windows and macOS it is the QGIS
    binary (running it with ``-m pip`` starts another QGIS), and on Linux embedded Python takes the
    first ``python3`` on PATH (a pyenv shim or a conda python, another Python altogether). So the
    interpreter is looked for in ``sys.prefix`` (Windows, conda) and ``sys.prefix/bin`` first;
    ``sys.executable`` is used only when it lives there or nothing else is found.
    """
    executable = sys.executable if executable is None else executable
    prefix = sys.prefix if prefix is None else prefix
    platform = sys.platform if platform is None else platform
    exe = Path(executable) if executable else None
    xy = f"{version[0]}.{version[1]}"
    names = ("python.exe", "python3.exe") if platform == "win32" else (f"python{xy}", "python3", "python")
    folders = [Path(prefix), Path(prefix) / "bin"]
    if exe is not None and _PYTHON_NAME.match(exe.name) and exe.parent in folders and exe.is_file():
        return exe
    for folder in [*folders, *([exe.parent, exe.parent / "bin"] if exe is not None else [])]:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    if exe is not None and _PYTHON_NAME.match(exe.name) and exe.is_file():
        return exe
    raise InstallError(
        f"cannot find the Python interpreter of QGIS (looked for {', '.join(names)} in "
        f"{', '.join(str(f) for f in folders)}); install the packages by hand, see the README"
    )


def read_requirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """The requirement lines of a requirements file (comments and blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def _name(requirement: str) -> str:
    m = _NAME.match(requirement)
    if m is None:
        raise InstallError(f"cannot read the requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", m.group(1)).lower()


def _find(name: str, paths: list[str]) -> importlib.metadata.Distribution | None:
    """The first installed distribution ``name`` along ``paths`` (the one Python would import)."""
    import importlib.metadata  # not at module level: the plugin imports this module at QGIS start

    return next(iter(importlib.metadata.distributions(name=name, path=paths)), None)


def _accepts(requirement: str, version: str) -> bool:
    """Whether ``version`` meets ``requirement``'s range; any version when ``packaging`` is absent."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return True
    return Requirement(requirement).specifier.contains(version, prereleases=True)


def installed(requirement: str, paths: list[str]) -> str | None:
    """``"name version"`` of what meets ``requirement`` along ``paths``, or None."""
    name = _name(requirement)
    for candidate in ONNXRUNTIME_VARIANTS if name == "onnxruntime" else (name,):
        dist = _find(candidate, paths)
        if dist is not None and _accepts(requirement, dist.version):
            return f"{candidate} {dist.version}"
    return None


def shared_pins(target: Path, packages: Iterable[str] = SHARED_PACKAGES) -> list[str]:
    """``name==version`` for each shared package the running Python has outside ``target``."""
    paths = [p for p in sys.path if Path(p or ".").resolve() != target.resolve()]
    pins = []
    for name in packages:
        dist = _find(name, paths)
        if dist is None:
            continue
        public = dist.version.split("+", 1)[0]  # a distribution's local tag (+dfsg) is not on PyPI
        if public.strip("0.") != "":  # Debian marks some as 0.0.0: nothing to pin against
            pins.append(f"{name}=={public}")
    return pins


@dataclass
class InstallPlan:
    """What one install does: pip's interpreter, the target, what to remove, install and pin."""

    python: Path
    target: Path
    requirements: list[str]
    constraints: list[str]
    remove: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    satisfied: list[str] = field(default_factory=list)

    def pip_args(self, constraints_file: Path) -> list[str]:
        """The argument list for :func:`subprocess.Popen` (no shell)."""
        return [str(self.python), "-u", "-m", "pip", "install", "--upgrade", "--no-input",
                "--disable-pip-version-check", "--target", str(self.target),
                "--constraint", str(constraints_file), *self.requirements]

    def describe(self) -> list[str]:
        """The plan in lines a user reads before confirming."""
        lines = [f"Python: {self.python}", f"Folder: {self.target}"]
        lines += [f"Already installed: {s}" for s in self.satisfied]
        lines += [f"Remove from the folder first: {r}" for r in self.remove]
        lines += [f"Install: {r}" for r in self.requirements]
        lines += [f"Constraint: {c}" for c in self.constraints]
        return lines + self.notes


def dependency_plan(target: Path, requirements: list[str] | None = None,
                    python: Path | None = None) -> InstallPlan:
    """Install the requirements not yet met (by QGIS's Python or the target folder)."""
    requirements = read_requirements() if requirements is None else requirements
    paths = [*sys.path, str(target)]
    found = {r: installed(r, paths) for r in requirements}
    return InstallPlan(
        python=python or python_interpreter(), target=target,
        requirements=[r for r, f in found.items() if f is None],
        constraints=shared_pins(target), satisfied=[f for f in found.values() if f],
    )


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver is installed (its ``nvidia-smi`` tool is on PATH)."""
    return shutil.which("nvidia-smi") is not None


def gpu_plan(target: Path, platform: str | None = None, nvidia: bool | None = None,
             python: Path | None = None) -> InstallPlan:
    """The opt-in GPU runtime: CUDA (NVIDIA on Linux/Windows), else DirectML (Windows).

    The CPU package is removed from the target first: both install the module ``onnxruntime`` and
    whichever pip wrote last would silently win.
    """
    platform = sys.platform if platform is None else platform
    nvidia = nvidia_gpu_present() if nvidia is None else nvidia
    if nvidia and platform in ("linux", "win32"):
        package = GPU_CUDA
    elif platform == "win32":
        package = GPU_DIRECTML
    elif platform == "darwin":
        raise InstallError("nothing to install on macOS: the standard onnxruntime package already "
                           "includes CoreML, the Apple GPU/Neural Engine provider")
    else:
        raise InstallError("no NVIDIA GPU found (nvidia-smi is not on PATH): install the NVIDIA "
                           "driver first; ONNX Runtime has no other GPU package for Linux")
    chosen = _name(package)
    plan = InstallPlan(python=python or python_interpreter(), target=target, requirements=[package],
                       constraints=shared_pins(target),
                       remove=[v for v in ONNXRUNTIME_VARIANTS if v != chosen])
    own = [v for v in ONNXRUNTIME_VARIANTS if _find(v, [p for p in sys.path if p != str(target)])]
    if own:
        plan.notes.append(f"Warning: QGIS's own Python has {', '.join(own)}, which comes first on the "
                          f"path and hides {chosen}: uninstall it from QGIS's Python to use the GPU.")
    if package == GPU_CUDA:
        plan.notes.append("The CUDA and cuDNN wheels are large: expect a download of a few GB.")
    plan.notes.append("Restart QGIS afterwards: a loaded onnxruntime cannot be swapped.")
    return plan


def remove_distribution(target: Path, name: str) -> bool:
    """Delete distribution ``name`` from the target folder (files listed in its RECORD only)."""
    dist = _find(name, [str(target)])
    if dist is None:
        return False
    root = target.resolve()
    files = [Path(dist.locate_file(f)).resolve() for f in dist.files or []]
    files = [f for f in files if f.is_relative_to(root)]
    for f in files:
        f.unlink(missing_ok=True)
    folders = {p for f in files for p in f.parents if p.is_relative_to(root) and p != root}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):  # deepest first
        shutil.rmtree(folder / "__pycache__", ignore_errors=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return True


def check_pip(python: Path, version: tuple[int, ...] = sys.version_info[:2]) -> str:
    """pip's version line for ``python``; InstallError when pip is missing or the Python differs."""
    try:
        # An argument list, no shell:
        proc = subprocess.run(  # nosec B603
            [str(python), "-m", "pip", "--version"], capture_output=True, text=True, timeout=120,
            creationflags=_NO_WINDOW)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InstallError(f"cannot run {python}: {exc}") from None
    if proc.returncode != 0:
        raise InstallError(
            f"pip is missing for {python}. Install it (Debian/Ubuntu: sudo apt install python3-pip; "
            f"otherwise: {python} -m ensurepip --user) and try again"
        )
    m = re.search(r"\(python (\d+)\.(\d+)\)", proc.stdout)
    if m and (int(m.group(1)), int(m.group(2))) != tuple(version[:2]):
        raise InstallError(f"{python} is Python {m.group(1)}.{m.group(2)}, but QGIS runs Python "
                           f"{version[0]}.{version[1]}; packages built for it would not load")
    return proc.stdout.strip()


def _stream(args: list[str], log: Callable[[str], None], is_canceled: Callable[[], bool]) -> int:
    """Run ``args``, passing each output line to ``log``; terminate it when ``is_canceled()``."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PIP_NO_INPUT": "1"}
    # An argument list, no shell:
    proc = subprocess.Popen(  # nosec B603
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        creationflags=_NO_WINDOW)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for raw in proc.stdout:
            lines.put(raw.decode("utf-8", errors="replace").rstrip())
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        if is_canceled():
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise InstallError("installation cancelled; the folder may hold a partial install, "
                               "run Install dependencies again to complete it")
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            return proc.wait()
        if line:
            log(line)


def run_install(plan: InstallPlan, log: Callable[[str], None],
                is_canceled: Callable[[], bool] = lambda: False) -> str:
    """Carry out ``plan``, logging each step and pip's output; return the closing sentence."""
    for line in plan.describe():
        log(line)
    if not plan.requirements and not plan.remove:
        return "Already installed: " + ", ".join(plan.satisfied) + ". Nothing to do."
    log(check_pip(plan.python))
    if sys.platform == "win32" and "onnxruntime" in sys.modules and plan.remove:
        raise InstallError("onnxruntime is loaded in this QGIS session and Windows locks its files: "
                           "restart QGIS and run this step before any prediction")
    try:
        plan.target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InstallError(f"cannot create {plan.target}: {exc}") from None
    for name in plan.remove:
        if remove_distribution(plan.target, name):
            log(f"Removed {name} from {plan.target}")
    fd, constraints = tempfile.mkstemp(prefix="eo_missing_constraints_", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(f"{c}\n" for c in plan.constraints))
        code = _stream(plan.pip_args(Path(constraints)), log, is_canceled)
    finally:
        Path(constraints).unlink(missing_ok=True)
    if code != 0:
        raise InstallError(f"pip failed (exit code {code}); the lines above say why")
    for pin in plan.constraints:
        if remove_distribution(plan.target, pin.split("==")[0]):
            log(f"Removed the copy of {pin.split('==')[0]} pip put in the folder: QGIS's own is used")
    importlib.invalidate_caches()
    return (f"Installed {', '.join(plan.requirements)} into {plan.target}. "
            + ("Restart QGIS to use them." if plan.remove else "They can be used now."))
