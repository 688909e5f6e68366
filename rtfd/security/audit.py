"""Dependency audit of requirements.lock: pip-audit where it can work, a narrower check where it cannot.

pip-audit asks PyPI's per-release JSON API (/pypi/<name>/<version>/json) which known vulnerabilities affect
each pinned version. Some networks (this project's build machines among them) pass PyPI's project API
(/pypi/<name>/json) but not the per-release one; pip-audit then can audit nothing. The project API lists
the vulnerabilities of the *latest* release only, so the fallback audits exactly the pins that are the latest
release and names every other pin as not audited (it never counts them as clean).

`python -m rtfd.security.audit [requirements.lock] [--ignore-vuln ID ...]`: exit status 1 when a pinned
version has a known vulnerability that is not ignored, 2 when the check could not run at all.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

PYPI = "https://pypi.org/pypi"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def pins(lock: Path) -> dict[str, str]:
    found = {}
    for number, line in enumerate(lock.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if match is None:
            raise ValueError(f"{lock}:{number}: not a name==version pin: {line!r}")
        found[match.group(1)] = match.group(2)
    return found


def per_release_api_works(client: httpx.Client) -> bool:
    """Whether /pypi/<name>/<version>/json answers (probed with a release that certainly exists)."""
    return client.get(f"{PYPI}/pip/24.0/json").status_code == 200


def run_pip_audit(lock: Path, ignored: list[str]) -> int:
    cmd = [sys.executable, "-m", "pip_audit", "-r", str(lock), "--vulnerability-service", "pypi", "--no-deps",
           "--strict", "--progress-spinner", "off"]
    for vuln in ignored:
        cmd += ["--ignore-vuln", vuln]
    return subprocess.run(cmd).returncode


def latest_release_audit(client: httpx.Client, pinned: dict[str, str], ignored: set[str]) -> tuple[list, list]:
    """(vulnerabilities of pins that are their project's latest release, pins that could not be audited)."""

    def one(item: tuple[str, str]) -> tuple[str, str, str | None, list]:
        name, version = item
        response = client.get(f"{PYPI}/{name}/json")
        if response.status_code != 200:
            return name, version, None, []
        data = response.json()
        return name, version, data["info"]["version"], data.get("vulnerabilities") or []

    vulnerable, unaudited = [], []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for name, version, latest, vulns in pool.map(one, sorted(pinned.items())):
            if latest != version:
                unaudited.append((name, version, latest))
                continue
            for vuln in vulns:
                ids = {vuln.get("id"), *(vuln.get("aliases") or [])}
                if not ids & ignored:
                    vulnerable.append((name, version, vuln.get("id"), vuln.get("fixed_in") or []))
    return vulnerable, unaudited


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtfd.security.audit", description=__doc__.splitlines()[0])
    parser.add_argument("lock", nargs="?", type=Path, default=Path("requirements.lock"))
    parser.add_argument("--ignore-vuln", action="append", default=[], metavar="ID",
                        help="a vulnerability id (or alias) accepted for a documented reason")
    args = parser.parse_args(argv)
    try:
        pinned = pins(args.lock)
    except (OSError, ValueError) as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    with httpx.Client(timeout=30, follow_redirects=True) as client:
        try:
            if per_release_api_works(client):
                return run_pip_audit(args.lock, args.ignore_vuln)
            print("audit: PyPI's per-release JSON API is not reachable from here; pip-audit cannot run. "
                  "Auditing the pins that are their project's latest release instead.", file=sys.stderr)
            vulnerable, unaudited = latest_release_audit(client, pinned, set(args.ignore_vuln))
        except httpx.HTTPError as exc:
            print(f"audit: PyPI not reachable ({exc}); nothing audited", file=sys.stderr)
            return 2
    for name, version, vuln_id, fixed in vulnerable:
        print(f"VULNERABLE {name}=={version}: {vuln_id} (fixed in {', '.join(fixed) or 'no release yet'})")
    if unaudited:
        print(f"NOT AUDITED ({len(unaudited)} pins are not their project's latest release): "
              + ", ".join(f"{n}=={v} (latest {lat or 'unknown'})" for n, v, lat in unaudited))
    audited = len(pinned) - len(unaudited)
    print(f"audit: {audited} of {len(pinned)} pins audited, {len(vulnerable)} known vulnerabilities",
          file=sys.stderr)
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
