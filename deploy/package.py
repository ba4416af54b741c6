#!/usr/bin/env python3
"""Build the Lambda package: a zip of cdc and its dependencies for one architecture and
Python version, the way Lambda runs it (unzipped into /var/task, first on sys.path).

    python deploy/package.py --arch arm64 --python 3.13            # → dist/cdc-lambda.zip
    python deploy/package.py --arch x86_64 --python 3.12 --out dist/cdc-lambda-x86_64.zip \\
        --add cdc.toml --add certs/global-bundle.pem

Wheels come from PyPI for the target platform (`pip install --platform manylinux…
--only-binary=:all:`), never built on this machine, so the compiled parts (psycopg's
binary libpq, SQLAlchemy's and orjson's extensions) match Lambda's, whatever builds the
zip. What the runtime already has (boto3 and its dependencies) is left out unless
--with-boto3; so are caches, console scripts and test suites. When this interpreter (or
a `pythonX.Y` on PATH) matches the target, the modules are compiled to bytecode: /var/task
is read-only, so without .pyc files every cold start compiles what it imports.

Prints the zipped and unzipped sizes and fails above Lambda's limits (50 MB zipped for a
direct upload, 250 MB unzipped).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "dist" / "cdc-lambda.zip"
LAMBDA_TASK_ROOT = "/var/task"  # where Lambda unpacks the zip

MB = 1024 * 1024
ZIPPED_LIMIT = 50 * MB  # a direct upload (larger ones must go through S3)
UNZIPPED_LIMIT = 250 * MB  # the function and its layers, unzipped

# In every Python runtime Lambda provides (/var/runtime): boto3 and what it needs.
RUNTIME_PROVIDED = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "six",
    "urllib3",
)

ARCHES = {"x86_64": "x86_64", "arm64": "aarch64"}
# Lambda's Python 3.12+ runtimes run on Amazon Linux 2023 (glibc 2.34), 3.11 on Amazon
# Linux 2 (glibc 2.26): the manylinux tags each can load, most specific first.
GLIBC_TAGS_AL2023 = ("manylinux_2_34", "manylinux_2_28", "manylinux_2_24", "manylinux2014")
GLIBC_TAGS_AL2 = ("manylinux_2_24", "manylinux2014")

# Files Lambda never needs. `tests` / `test` directories below a package's top level
# are test suites; a top-level one would be a package named so, and is kept.
STRIP_DIRS = {"__pycache__"}
STRIP_NESTED_DIRS = {"tests", "test"}
STRIP_TOP = {"bin"}  # console scripts: /var/task/bin is never on PATH


class PackageError(Exception):
    pass


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build the cdc Lambda package (a zip for the chosen architecture and Python).",
    )
    parser.add_argument(
        "--arch",
        choices=sorted(ARCHES),
        default="arm64",
        help="Lambda architecture (default arm64)",
    )
    parser.add_argument(
        "--python", default="3.13", help="Lambda Python version, e.g. 3.12 or 3.13 (default 3.13)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"the zip to write (default {DEFAULT_OUT.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--with-boto3",
        action="store_true",
        help="include boto3 and botocore instead of using the runtime's",
    )
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME",
        help="a project extra to include, e.g. mysql (repeatable)",
    )
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="SRC[=DEST]",
        help="also put this file in the zip, at DEST (default: its name), e.g. cdc.toml or a "
        "CA bundle (repeatable)",
    )
    parser.add_argument("--no-compile", action="store_true", help="do not precompile to bytecode")
    parser.add_argument(
        "--wheelhouse",
        type=Path,
        help="reuse the wheels in this directory and download only what is missing (fast, "
        "repeatable builds)",
    )
    parser.add_argument("--project", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d{1,2}", args.python) or int(args.python.split(".")[1]) < 11:
        parser.error(f"--python {args.python}: expected 3.11 or later, as X.Y")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        build(args)
    except PackageError as exc:
        print(f"package.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


def build(args: argparse.Namespace) -> None:
    version = tuple(int(p) for p in args.python.split("."))
    with tempfile.TemporaryDirectory(prefix="cdc-package-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(args.project, work / "wheel", args.wheelhouse)
        root = work / "root"
        removed = install(
            wheel, args.extra, root, args.arch, version, args.wheelhouse, with_boto3=args.with_boto3
        )
        strip(root)
        for spec in args.add:
            add_file(root, spec)
        check(root, with_boto3=args.with_boto3)
        compiled = False if args.no_compile else compile_bytecode(root, args.python)
        unzipped = write_zip(root, args.out)
    zipped = args.out.stat().st_size
    if removed:
        print(f"left out (in the Lambda runtime): {', '.join(removed)}")
    if not compiled and not args.no_compile:
        print(
            f"note: not precompiled (no python{args.python} here): cold starts will compile "
            "the modules they import"
        )
    print(
        f"{args.out}: {zipped / MB:.1f} MB zipped, {unzipped / MB:.1f} MB unzipped "
        f"(Lambda {args.arch}, python{args.python}; limits {ZIPPED_LIMIT // MB} MB zipped "
        f"for a direct upload, {UNZIPPED_LIMIT // MB} MB unzipped)"
    )
    if zipped > ZIPPED_LIMIT:
        raise PackageError(
            f"{args.out} is {zipped / MB:.1f} MB zipped, over Lambda's {ZIPPED_LIMIT // MB} MB"
        )
    if unzipped > UNZIPPED_LIMIT:
        raise PackageError(
            f"{args.out} is {unzipped / MB:.1f} MB unzipped, "
            f"over Lambda's {UNZIPPED_LIMIT // MB} MB"
        )


# --- pip ------------------------------------------------------------------------------


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    run = subprocess.run(command, capture_output=True, text=True)  # noqa: S603 (our arguments)
    if run.returncode != 0:
        raise PackageError(f"pip {args[0]} failed:\n{run.stdout}{run.stderr}".rstrip())


def with_wheelhouse(
    wheelhouse: Path | None, attempt: Iterable[str], fill: Iterable[str] | None
) -> None:
    """Run pip with `attempt`; with a wheelhouse, offline from it first, and when
    something is missing, download it there (`fill`) and try again."""
    attempt = list(attempt)
    if wheelhouse is None:
        pip(*attempt)
        return
    wheelhouse.mkdir(parents=True, exist_ok=True)
    offline = [*attempt, "--no-index", "--find-links", str(wheelhouse)]
    try:
        pip(*offline)
    except PackageError:
        if fill is None:
            raise
        pip("download", "--dest", str(wheelhouse), *fill)
        pip(*offline)


def build_wheel(project: Path, dest: Path, wheelhouse: Path | None) -> Path:
    """The project's wheel: the `cdc` package with its migrations (pyproject's
    force-include), exactly what `pip install cdc` would install. With a wheelhouse,
    kept there under a hash of the sources and reused while they do not change."""
    cached = None
    if wheelhouse is not None:
        cached = wheelhouse / "project" / source_hash(project)
        found = sorted(cached.glob("*.whl"))
        if found:
            return found[0]
    requires = tomllib.loads((project / "pyproject.toml").read_text())["build-system"]["requires"]
    with_wheelhouse(
        wheelhouse,
        ["wheel", "--no-deps", "--wheel-dir", str(dest), str(project)],
        ["--only-binary=:all:", *requires],
    )
    (wheel,) = dest.glob("*.whl")
    if cached is not None:
        cached.mkdir(parents=True, exist_ok=True)
        wheel = Path(shutil.copy2(wheel, cached / wheel.name))
    return wheel


def source_hash(project: Path) -> str:
    digest = hashlib.sha256()
    files = [project / "pyproject.toml", project / "README.md"]
    for folder in ("cdc", "migrations"):
        files += [
            p for p in (project / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        ]
    for path in sorted(files):
        if path.is_file():
            digest.update(path.relative_to(project).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def install(
    wheel: Path,
    extras: Sequence[str],
    root: Path,
    arch: str,
    version: tuple[int, ...],
    wheelhouse: Path | None,
    *,
    with_boto3: bool,
) -> list[str]:
    """Resolve the project's dependencies for the target platform, then unpack the
    chosen wheels into `root`; returns the names left out. (Resolving first means the
    runtime's boto3 and botocore, thousands of files, are never unpacked at all.)"""
    machine = ARCHES[arch]
    tags = GLIBC_TAGS_AL2023 if version >= (3, 12) else GLIBC_TAGS_AL2
    nodot = f"{version[0]}{version[1]}"
    target = [
        *(arg for tag in tags for arg in ("--platform", f"{tag}_{machine}")),
        "--implementation", "cp",
        "--python-version", f"{version[0]}.{version[1]}",
        "--abi", f"cp{nodot}",
        "--only-binary=:all:",
    ]  # fmt: skip
    requirement = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    report = root.parent / "report.json"
    resolve = ["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)]
    with_wheelhouse(wheelhouse, [*resolve, *target, requirement], [*target, requirement])
    resolved = json.loads(report.read_text())["install"]
    left_out = set() if with_boto3 else runtime_provided(resolved)
    urls = [
        item["download_info"]["url"]
        for item in resolved
        if _normalize(item["metadata"]["name"]) not in left_out
    ]
    pip("install", "--no-deps", "--no-compile", "--target", str(root), *target, *urls)
    return sorted(left_out)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_provided(resolved: Sequence[dict[str, Any]]) -> set[str]:
    """The resolved distributions Lambda's runtime already has. It is an error if a
    dependency we keep needs one (it would get the runtime's version, untested). cdc
    itself is exempt: it imports boto3 only for AWS features, and then uses the runtime's."""
    names = {_normalize(item["metadata"]["name"]): item for item in resolved}
    leaving = {_normalize(n) for n in RUNTIME_PROVIDED} & set(names)
    for name, item in names.items():
        if name in leaving or name == "cdc":
            continue
        for requirement in item["metadata"].get("requires_dist", []):
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
            if match and "extra ==" not in requirement and _normalize(match[1]) in leaving:
                raise PackageError(f"{name} needs {match[1]}: build with --with-boto3")
    return leaving


def strip(root: Path) -> None:
    for name in STRIP_TOP:
        shutil.rmtree(root / name, ignore_errors=True)
    for path in sorted(root.rglob("*"), reverse=True):  # children before parents
        if not path.is_dir():
            continue
        nested = len(path.relative_to(root).parts) > 1
        if path.name in STRIP_DIRS or (nested and path.name in STRIP_NESTED_DIRS):
            shutil.rmtree(path)
    _remove_empty_dirs(root)


def _remove_empty_dirs(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def add_file(root: Path, spec: str) -> None:
    source_text, _, dest_text = spec.partition("=")
    source = Path(source_text)
    if not source.is_file():
        raise PackageError(f"--add {spec}: {source} is not a file")
    dest = Path(dest_text or source.name)
    if dest.is_absolute() or ".." in dest.parts:
        raise PackageError(
            f"--add {spec}: the destination must be a relative path inside the package"
        )
    (root / dest).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, root / dest)


def check(root: Path, *, with_boto3: bool) -> None:
    """What the function cannot run without; a broken build must not be deployed."""
    required = [
        "cdc/handler.py",
        "cdc/migrations/env.py",  # `migrations/`, force-included into the wheel
        "sqlalchemy/__init__.py",
        "psycopg/__init__.py",
        "psycopg_binary/__init__.py",  # the compiled libpq: there is none in Lambda
    ]
    missing = [p for p in required if not (root / p).is_file()]
    if not any((root / "cdc/migrations/versions").glob("*.py")):
        missing.append("cdc/migrations/versions/*.py")
    if missing:
        raise PackageError(f"the package lacks {', '.join(missing)}")
    if not with_boto3 and (root / "boto3").exists():
        raise PackageError("boto3 is still in the package")


# --- bytecode and zip -------------------------------------------------------------------


def compile_bytecode(root: Path, python: str) -> bool:
    """Compile with an interpreter of the target version (bytecode is version-specific).
    Unchecked-hash pycs: valid whatever the files' timestamps after unzipping (and the
    sources cannot change in /var/task, which is read-only)."""
    interpreter = find_interpreter(python)
    if interpreter is None:
        return False
    command = [
        interpreter,
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        # Record the files where Lambda has them (tracebacks), not this temporary
        # directory: the same sources then give the same bytes.
        "-s",
        str(root),
        "-p",
        LAMBDA_TASK_ROOT,
        str(root),
    ]
    run = subprocess.run(command, capture_output=True, text=True)  # noqa: S603 (our arguments)
    if run.returncode != 0:
        # Some packages ship files that only parse on other versions (e.g. a vendored
        # py2 module). Those are never imported; the rest is compiled all the same.
        print(f"note: compileall reported problems:\n{run.stdout}{run.stderr}".rstrip())
    return True


def find_interpreter(python: str) -> str | None:
    """This interpreter, or a `pythonX.Y` on PATH that runs and is that version (a
    pyenv shim may exist without a Python behind it)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        return sys.executable
    found = shutil.which(f"python{python}")
    if found is None:
        return None
    probe = [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    try:
        run = subprocess.run(probe, capture_output=True, text=True, timeout=30)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if run.returncode == 0 and run.stdout.strip() == python else None


def write_zip(root: Path, out: Path) -> int:
    """Write a reproducible zip (sorted entries, fixed timestamps, normalized modes);
    returns the unzipped size."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    total = 0
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(
                path.relative_to(root).as_posix(), date_time=(1980, 1, 1, 0, 0, 0)
            )
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            total += len(data)
            archive.writestr(info, data)
    partial.replace(out)
    return total


if __name__ == "__main__":
    sys.exit(main())
