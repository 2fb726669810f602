"""Build hook: ``cli.py`` at the repository root installs as the module ``emergence.cli``.

Everything else about the build is in ``pyproject.toml``.
"""

from setuptools import setup
from setuptools.command.build_py import build_py


class _BuildPy(build_py):
    """Adds the repository's ``cli.py`` to the ``emergence`` package of the wheel."""

    def find_package_modules(self, package, package_dir):  # noqa: ANN001, ANN201 -- setuptools' own signature
        modules = super().find_package_modules(package, package_dir)
        if package == "emergence":
            modules.append(("emergence", "cli", "cli.py"))
        return modules


setup(cmdclass={"build_py": _BuildPy})
