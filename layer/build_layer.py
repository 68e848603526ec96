"""Build the Lambda layer zip: lambda_fanout plus its pinned runtime dependencies.

    ./build.sh layer [--python 3.11|3.12|3.13] [--arch x86_64|arm64] [--universal] [--all] [--out dist]

Layout (what Lambda mounts at /opt):
    python/lambda_fanout/                        the package, with strategies/ as lambda_fanout/strategies/
    python/lib/python3.X/site-packages/          aiobotocore, boto3, botocore, aiohttp ... and awscrt

``--universal`` builds one zip for python3.11 to 3.13 on both architectures: every
dependency from its pure-Python wheel, straight under python/, with bytecode for
each of those interpreters the machine has. aiohttp, multidict, yarl and
frozenlist then run without their C speedups, and awscrt (layer/requirements-native.txt,
which has no pure-Python wheel) is left out, so ``FANOUT_AWS_CLIENT=crt`` falls back to
botocore there; a native zip for one runtime and architecture keeps both.

Dependencies come from layer/requirements.txt (pinned, hash-checked) as manylinux
wheels for the target platform. Bytecode is precompiled (unchecked-hash .pyc) with
the target interpreter where the machine has it: Lambda's /opt is read-only, so
Python could not cache it and would compile on every cold start. The zip is
reproducible: sorted entries, fixed timestamps and permissions.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "layer" / "requirements.txt"
#: Compiled-only dependencies (awscrt, for FANOUT_AWS_CLIENT=crt): the native zips carry
#: them, the universal zip cannot (no pure-Python wheel), and the crt profile then falls
#: back to botocore with a warning.
NATIVE_REQUIREMENTS = ROOT / "layer" / "requirements-native.txt"
PACKAGE = ROOT / "python" / "lambda_fanout"
#: Shipped as lambda_fanout.strategies; kept at the repository's top level and linked
#: into the package (python/lambda_fanout/strategies -> ../../strategies).
STRATEGIES = ROOT / "strategies"
PYTHONS = ("3.11", "3.12", "3.13")
ARCHS = ("x86_64", "arm64")
ZIPPED_LIMIT = 50 * 1024 * 1024     # direct upload
UNZIPPED_LIMIT = 250 * 1024 * 1024  # function and all its layers, unzipped
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
#: Left out of the layer: never read at runtime.
STRIP_DIRS = {"__pycache__", "tests", "test", "bin"}
STRIP_SUFFIXES = (".pyi", ".pyc", ".pyo")
STRIP_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def platforms(python: str, arch: str) -> list[str]:
    """manylinux tags Lambda's runtime can load: python3.11 runs on Amazon Linux 2
    (glibc 2.26), python3.12+ on Amazon Linux 2023 (glibc 2.34)."""
    machine = "x86_64" if arch == "x86_64" else "aarch64"
    tags = [f"manylinux2014_{machine}", f"manylinux_2_17_{machine}"]
    if python != "3.11":
        tags = [f"manylinux_2_34_{machine}", f"manylinux_2_28_{machine}"] + tags
    return tags


def find_interpreter(python: str) -> str | None:
    """The target Python, to precompile bytecode with; None if the machine lacks it."""
    candidates = [shutil.which(f"python{python}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        candidates += [str(p / "bin" / f"python{python}") for p in sorted(pyenv.glob(f"{python}.*"))]
    for c in candidates:
        if c and Path(c).exists():
            probe = subprocess.run([c, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip() == python:
                return c
    return None


UNIVERSAL = "universal"


def install_dependencies(target: Path, python: str, arch: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
           "--require-hashes", "-r", str(REQUIREMENTS), "--target", str(target), "--only-binary=:all:"]
    if python != UNIVERSAL:
        cmd[cmd.index("--target"):cmd.index("--target")] = ["-r", str(NATIVE_REQUIREMENTS)]
    if python == UNIVERSAL:
        cmd += ["--implementation", "py", "--abi", "none", "--platform", "any", "--python-version", PYTHONS[0]]
    else:
        cmd += ["--implementation", "cp", "--python-version", python]
        for tag in platforms(python, arch):
            cmd += ["--platform", tag]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        noise = "is ignored: it is neither a file nor a directory"
        err = "\n".join(line for line in proc.stderr.splitlines() if noise not in line)
        raise SystemExit(f"pip could not install the layer's dependencies for Python {python} {arch}:\n{err}")


def copy_package(dest: Path) -> None:
    """Copy the package (python/, its strategies link followed) into ``dest``."""
    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n in STRIP_DIRS or n.endswith(STRIP_SUFFIXES)}

    # symlinks=False: the strategies link is copied as the folder it points to, so the
    # zip holds lambda_fanout/strategies/ once, as real files, and no bare strategies/.
    shutil.copytree(PACKAGE, dest / "lambda_fanout", ignore=ignore, symlinks=False)


def stage(dest: Path) -> Path:
    """Assemble the importable package (no dependencies) under ``dest``, replacing what was there.

    The tests and the property-test venvs put ``dest`` on PYTHONPATH, so they import
    the package exactly as the zip lays it out.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    copy_package(dest)
    return dest


def check_strategies(names: list[str], root: str = "python/") -> None:
    """Fail the build if the zip's file list lacks a strategy module or ships a bare ``strategies``.

    A top-level ``strategies`` in the layer would be importable on its own and could be
    shadowed by (or shadow) a function's own ``strategies`` module.
    """
    wanted = {f"{root}lambda_fanout/strategies/{p.name}" for p in STRATEGIES.glob("*.py")}
    missing = sorted(wanted - set(names))
    if missing:
        raise SystemExit(f"layer build: the zip lacks strategy modules {missing}; check copy_package().")
    bare = sorted({n for n in names if n.startswith(f"{root}strategies/") or n == f"{root}strategies.py"
                   or "/site-packages/strategies" in n})
    if bare:
        raise SystemExit(f"layer build: the zip holds a top-level strategies package ({bare[:3]}); "
                         "the strategies must ship only as lambda_fanout.strategies.")


def strip(tree: Path) -> None:
    for path in sorted(tree.rglob("*"), reverse=True):
        if not path.exists():
            continue
        if path.is_dir() and path.name in STRIP_DIRS:
            shutil.rmtree(path)
        elif path.is_file() and (path.name.endswith(STRIP_SUFFIXES)
                                 or (path.parent.name.endswith(".dist-info") and path.name in STRIP_DIST_INFO)):
            path.unlink()


def compile_bytecode(tree: Path, interpreter: str) -> None:
    subprocess.run([interpreter, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    "-s", str(tree), "-p", "/opt", str(tree)], check=True)


def write_zip(tree: Path, zip_path: Path) -> tuple[int, int]:
    """Deterministic zip of ``tree``; returns (zipped bytes, unzipped bytes)."""
    files = sorted((p for p in tree.rglob("*") if p.is_file()), key=lambda p: p.relative_to(tree).as_posix())
    unzipped = 0
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(tree).as_posix(), date_time=FIXED_TIME)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            unzipped += len(data)
            zf.writestr(info, data, compresslevel=9)
    tmp.replace(zip_path)
    return zip_path.stat().st_size, unzipped


def build(python: str, arch: str, out: Path) -> dict:
    """Build one zip (``python`` may be "universal"); returns its path, sizes, digest and bytecode versions."""
    universal = python == UNIVERSAL
    with tempfile.TemporaryDirectory(prefix="fanout-layer-") as tmp:
        tree = Path(tmp) / "opt"
        deps = tree / "python" if universal else tree / "python" / "lib" / f"python{python}" / "site-packages"
        install_dependencies(deps, python, arch)
        copy_package(tree / "python")
        strip(tree)
        # Before the slow bytecode step: a zip without every strategy is not worth finishing.
        check_strategies([p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()])
        compiled = []
        for version in PYTHONS if universal else (python,):
            interpreter = find_interpreter(version)
            if interpreter:
                compile_bytecode(tree, interpreter)
                compiled.append(version)
        name = "lambda-fanout-layer-universal.zip" if universal else f"lambda-fanout-layer-py{python}-{arch}.zip"
        zip_path = out / name
        zipped, unzipped = write_zip(tree, zip_path)
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    return {"path": str(zip_path), "python": python, "arch": arch, "zipped": zipped, "unzipped": unzipped,
            "sha256": digest, "bytecode": compiled}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="./build.sh layer", description="Build the lambda-fanout Lambda layer zip.")
    p.add_argument("--python", choices=PYTHONS, default="3.12", help="target runtime (default 3.12)")
    p.add_argument("--arch", choices=ARCHS, default="x86_64", help="target architecture (default x86_64)")
    p.add_argument("--universal", action="store_true",
                   help="one zip for python3.11-3.13 on both architectures (pure-Python wheels)")
    p.add_argument("--all", action="store_true", help="every Python and architecture, and the universal zip")
    p.add_argument("--out", default=str(ROOT / "dist"), help="output folder (default dist/)")
    p.add_argument("--stage", metavar="DIR",
                   help="only assemble the package (python/ plus strategies/, no dependencies) into DIR")
    args = p.parse_args(argv)
    if args.stage:
        print(stage(Path(args.stage)))
        return 0
    if args.all:
        matrix = [(py, arch) for py in PYTHONS for arch in ARCHS] + [(UNIVERSAL, "any")]
    elif args.universal:
        matrix = [(UNIVERSAL, "any")]
    else:
        matrix = [(args.python, args.arch)]
    failed = False
    for python, arch in matrix:
        result = build(python, arch, Path(args.out))
        mb = 1024 * 1024
        status = "ok"
        if result["zipped"] > ZIPPED_LIMIT or result["unzipped"] > UNZIPPED_LIMIT:
            status = "TOO LARGE for Lambda (50 MB zipped, 250 MB unzipped)"
            failed = True
        bytecode = (f"bytecode precompiled for Python {', '.join(result['bytecode'])}" if result["bytecode"]
                    else "no target interpreter here: bytecode not precompiled")
        print(f"{result['path']}: {result['zipped'] / mb:.1f} MB zipped, {result['unzipped'] / mb:.1f} MB unzipped, "
              f"{bytecode}, sha256 {result['sha256'][:16]}: {status}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
