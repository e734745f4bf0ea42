"""A throwaway virtual environment layered on the running one, for tests that install plugins with real pip.

``pip install`` and ``pip uninstall`` there leave the environment the suite
(and anyone else on the machine) runs in untouched, yet the new environment
sees oodbench, torch, pytest and every plugin installed here: a ``.pth``
file adds this interpreter's site directories after its own, with their
``.pth`` files (editable installs) processed too.
"""

from __future__ import annotations

import site
import subprocess
import sys
from pathlib import Path

from cli_support import subprocess_env

TIMEOUT = 600
PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input")


def _site_dirs() -> list[str]:
    dirs = site.getsitepackages()
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if Path(d).is_dir()]


class LayeredEnv:
    """A venv at ``root`` whose ``python`` imports what this one does, plus what is pip-installed into it."""

    def __init__(self, root: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=TIMEOUT)
        self.python = root / "bin" / "python"
        purelib = self.run("-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
        lines = "; ".join(f"site.addsitedir({d!r})" for d in _site_dirs())
        (Path(purelib) / "_oodbench_tests_parent.pth").write_text(f"import site; {lines}\n")

    def run(self, *args: str, cwd: Path | None = None, **env: str | None) -> subprocess.CompletedProcess:
        """``python ARGS`` here (only first-party plugins load unless ``OODBENCH_LOAD_PLUGINS`` is given)."""
        return subprocess.run([str(self.python), *args], cwd=cwd, env=subprocess_env(**env), capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)

    def oodbench(self, *args: str, cwd: Path | None = None, **env: str | None) -> subprocess.CompletedProcess:
        return self.run("-m", "oodbench.cli", *args, cwd=cwd, **env)

    def pip_install(self, *targets: str | Path, editable: bool = False) -> None:
        """Install from local projects only: no index, and the build uses the setuptools already here."""
        args = [part for target in targets for part in (["-e", str(target)] if editable else [str(target)])]
        result = self.run(*PIP, "install", "--no-index", "--no-build-isolation", *args)
        assert result.returncode == 0, result.stdout + result.stderr

    def pip_uninstall(self, *dists: str) -> None:
        result = self.run(*PIP, "uninstall", "-y", *dists)
        assert result.returncode == 0, result.stdout + result.stderr

    def installed(self, dist: str) -> str | None:
        """The version of ``dist`` this environment sees, or None."""
        result = self.run("-c", "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))", dist)
        return result.stdout.strip() if result.returncode == 0 else None
