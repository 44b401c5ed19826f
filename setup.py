"""Package data for non-editable installs: the built-in workflows and structures (repository
directories ``workflows/`` and ``structures/``) are copied into the wheel as
``dfptmag/_data/{workflows,structures}``, where dfptmag.data finds them. Everything else is in
pyproject.toml."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = ("workflows", "structures")


class build_py_with_data(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return          # editable: dfptmag.data uses the repository's directories
        root = Path(__file__).resolve().parent
        for name in DATA:
            shutil.copytree(root / name, Path(self.build_lib) / "dfptmag" / "_data" / name,
                            dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": build_py_with_data})
