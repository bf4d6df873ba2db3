"""Fetches one pinned wheel of pip from the package index, for a Python that has no pip and no
ensurepip (Debian's python3 without the python3-venv package): a wheel is a zip that Python can
run, so `python pip-X-py3-none-any.whl/pip install ...` needs nothing else.

    python3 scripts/lib/pip_wheel.py VERSION SHA256 DIR    # prints the wheel's path

Reads the index's JSON simple API (PEP 691) at $PIP_INDEX_URL, or PyPI's; refuses a file whose
SHA-256 is not the pinned one. Standard library only.
"""

import hashlib
import json
import os
import sys
import urllib.parse
import urllib.request


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    version, sha256, directory = sys.argv[1:]
    filename = f"pip-{version}-py3-none-any.whl"
    path = os.path.join(directory, filename)
    if os.path.exists(path) and digest(path) == sha256:
        print(path)
        return 0
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    request = urllib.request.Request(
        f"{index}/pip/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    url = next((f["url"] for f in files if f["filename"] == filename), None)
    if url is None:
        print(f"pip_wheel.py: {index}/pip/ lists no {filename}", file=sys.stderr)
        return 1
    url = urllib.parse.urljoin(f"{index}/pip/", url)
    os.makedirs(directory, exist_ok=True)
    with urllib.request.urlopen(url, timeout=120) as response, open(path + ".part", "wb") as out:
        out.write(response.read())
    got = digest(path + ".part")
    if got != sha256:
        os.remove(path + ".part")
        print(f"pip_wheel.py: {filename} from {url} has SHA-256 {got}, pinned {sha256}", file=sys.stderr)
        return 1
    os.replace(path + ".part", path)
    print(path)
    return 0


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
