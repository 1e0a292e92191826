"""
Tests of the packaging: the dependencies pyproject.toml declares are the
ones clientproxy imports, the Twisted the tests run on is within the range
it declares, and the sdist and the wheel built from this checkout hold
what they must: the sdist the tests and what they read, the wheel the
package and the twistd plugin, which, installed in a clean virtual
environment, gives C{twistd clientproxy --version}.
"""

import ast
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

from twisted.trial import unittest

import clientproxy
from clientproxy.ops.config import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: What the sdist holds beyond the package: every file of these folders...
SDIST_FOLDERS = ("tests", "docs", "contrib", "tac", "tools", "demo", "bench")
#: ...and these files.
SDIST_FILES = ("README.md", "CHANGELOG.md", "LICENSE", "pyproject.toml", "setup.py", "MANIFEST.in")

#: What is not source: left by runs, builds and tools.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "_trial_temp*",
    ".hypothesis",
    ".ruff_cache",
    "__pycache__",
    "*.pyc",
    "build",
    "dist",
    "*.egg-info",
    "dropin.cache",
)

#: Seconds the slowest step (building the sdist and the wheel) may take.
BUILD_TIMEOUT = 180


def pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def normalised(name):
    """
    A distribution's name as PEP 503 compares them.
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def parseRequirement(text):
    """
    C{(name, extras, specifier, marker)} of a requirement string such as
    C{twisted[tls]>=26.10,<27; python_version < '3.11'}.
    """
    requirement, _, marker = text.partition(";")
    match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?\s*(.*)", requirement)
    name, extras, specifier = match.groups()
    extras = [e.strip() for e in (extras or "").split(",") if e.strip()]
    return normalised(name), extras, specifier.strip(), marker.strip()


def extraRequirements(distribution, extra):
    """
    The names of what C{distribution}'s C{extra} adds (C{twisted}'s
    C{tls}: pyOpenSSL, service-identity, idna), from its installed
    metadata.
    """
    names = set()
    for text in importlib.metadata.requires(distribution) or ():
        name, _, _, marker = parseRequirement(text)
        if re.search(r"""extra\s*==\s*["']%s["']""" % (re.escape(extra),), marker):
            names.add(name)
    return names


def importedBy(path):
    """
    The top-level names of the modules that the Python file C{path} imports
    (absolute imports only: relative ones are the package's own).
    """
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


class DependencyTests(unittest.TestCase):
    """
    The dependencies declared are the ones clientproxy imports.
    """

    def setUp(self):
        if not hasattr(sys, "stdlib_module_names") or not hasattr(
            importlib.metadata, "packages_distributions"
        ):
            raise unittest.SkipTest("needs Python 3.10 (sys.stdlib_module_names)")

    def declared(self):
        """
        The names of the distributions declared: C{(runtime, extras)}, a
        set and a dict of sets by extra; an extra of a dependency
        (C{twisted[tls]}) counts what it adds.
        """
        project = pyproject()

        def names(requirements):
            found = set()
            for text in requirements:
                name, extras, _, _ = parseRequirement(text)
                found.add(name)
                for extra in extras:
                    found |= extraRequirements(name, extra)
            return found

        extras = {
            extra: names(requirements)
            for extra, requirements in project["optional-dependencies"].items()
        }
        return names(project["dependencies"]), extras

    def test_importsAreDeclared(self):
        """
        Every module outside the standard library that clientproxy imports
        comes from a declared distribution: the package and the twistd
        plugin from the dependencies, the Redis client also from the
        C{redis} extra, C{clientproxy.testing} also from the C{test} extra.
        """
        runtime, extras = self.declared()
        runtime.add("clientproxy")
        distributions = importlib.metadata.packages_distributions()
        sources = [os.path.join(ROOT, "twisted", "plugins", "clientproxy_plugin.py")]
        for directory, _, files in os.walk(os.path.join(ROOT, "clientproxy")):
            sources += [os.path.join(directory, f) for f in files if f.endswith(".py")]
        undeclared = []
        for path in sources:
            relative = os.path.relpath(path, ROOT)
            allowed = set(runtime)
            if relative.startswith(os.path.join("clientproxy", "testing")):
                allowed |= extras["test"] | extras["redis"]
            if relative.startswith(os.path.join("clientproxy", "state", "redis")):
                allowed |= extras["redis"]
            for name in sorted(importedBy(path) - set(sys.stdlib_module_names)):
                if name == "clientproxy":
                    continue
                # A module not installed here (tomli on Python 3.11) is
                # declared under its own name, with a marker.
                owners = {normalised(d) for d in distributions.get(name, ())}
                owners = owners or {normalised(name)}
                if not owners & allowed:
                    undeclared.append("%s imports %s (from %s)" % (relative, name, owners or "?"))
        self.assertEqual(undeclared, [])

    def test_redisIsAnExtra(self):
        """
        hiredis, which only C{--redis} needs, is in the C{redis} extra and
        not among the dependencies every install gets.
        """
        runtime, extras = self.declared()
        self.assertIn("hiredis", extras["redis"])
        self.assertNotIn("hiredis", runtime)

    def test_twistedWithinTheDeclaredRange(self):
        """
        The Twisted these tests run on is within the range pyproject.toml
        declares, which has an upper bound: the range is the tested one.
        """
        try:
            from packaging.specifiers import SpecifierSet
        except ImportError:
            raise unittest.SkipTest("needs packaging (it comes with the test extra's build)")
        import twisted

        [specifier] = [
            parseRequirement(text)[2]
            for text in pyproject()["dependencies"]
            if parseRequirement(text)[0] == "twisted"
        ]
        self.assertTrue(
            any(s.operator in ("<", "<=", "~=", "==") for s in SpecifierSet(specifier)),
            "no upper bound on Twisted: %s" % (specifier,),
        )
        self.assertIn(twisted.__version__, SpecifierSet(specifier))


class BuildTests(unittest.TestCase):
    """
    The sdist and the wheel, built from a copy of this checkout without the
    network (C{python -m build --no-isolation}: the test extra's build and
    setuptools), and the wheel installed in a clean virtual environment.

    The clean environment gets the wheel alone (C{pip install --no-deps
    --no-index}) and finds its dependencies in this environment's
    site-packages (a C{.pth} file naming them): installing them anew would
    download or copy some 20 distributions at every run for nothing the
    wheel decides, while the dependencies it declares are checked above
    against what clientproxy imports, and its metadata below.
    """

    def setUp(self):
        if importlib.util.find_spec("build") is None:
            raise unittest.SkipTest("needs build (the test extra: pip install -e '.[test]')")
        version = importlib.metadata.version("setuptools")
        if int(version.split(".")[0]) < 77:
            raise unittest.SkipTest(
                "needs setuptools>=77 to build without the network (the test extra); "
                "this environment has %s" % (version,)
            )
        self.work = tempfile.mkdtemp(prefix="clientproxy-packaging-")
        self.addCleanup(shutil.rmtree, self.work, True)

    def command(self, arguments, timeout=60, **kwargs):
        try:
            done = subprocess.run(
                arguments,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                text=True,
                **kwargs,
            )
        except subprocess.TimeoutExpired:
            self.fail("%s took more than %d s" % (" ".join(arguments), timeout))
        if done.returncode != 0:
            self.fail("%s failed:\n%s" % (" ".join(arguments), done.stdout))
        return done.stdout

    def build(self):
        """
        Build the sdist and the wheel (from the sdist, as pip would) of a
        copy of the checkout; return C{(source, sdist, wheel)}.
        """
        source = os.path.join(self.work, "source")
        shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
        out = os.path.join(self.work, "dist")
        self.command(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source],
            timeout=BUILD_TIMEOUT,
        )
        [sdist] = [os.path.join(out, f) for f in os.listdir(out) if f.endswith(".tar.gz")]
        [wheel] = [os.path.join(out, f) for f in os.listdir(out) if f.endswith(".whl")]
        return source, sdist, wheel

    def test_sdistWheelAndCleanInstall(self):
        """
        The sdist holds every file of the tests (helpers included), docs,
        examples, tac files, tools, demo and benchmarks, and its tests run
        (those that read docs/ and tac/); the wheel holds the package and
        the twistd plugin, declares hiredis only for the C{redis} extra, and
        installed alone in a clean virtual environment gives C{twistd
        clientproxy --version} with clientproxy's version, run from that
        environment.
        """
        source, sdist, wheel = self.build()

        with tarfile.open(sdist) as archive:
            members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
            expected = set(SDIST_FILES)
            for folder in SDIST_FOLDERS:
                for directory, _, files in os.walk(os.path.join(source, folder)):
                    expected |= {os.path.relpath(os.path.join(directory, f), source) for f in files}
            self.assertEqual(sorted(expected - members), [])
            archive.extractall(self.work)
        unpacked = os.path.join(self.work, os.path.basename(sdist)[: -len(".tar.gz")])
        report = self.command(
            [sys.executable, "-m", "twisted.trial", "tests.test_settings", "tests.test_errors"],
            cwd=unpacked,
            env=dict(os.environ, PYTHONPATH=unpacked),
        )
        self.assertIn("PASSED", report)

        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
            metadata = archive.read(metadata).decode("utf-8")
        self.assertIn("twisted/plugins/clientproxy_plugin.py", names)
        for directory, _, files in os.walk(os.path.join(source, "clientproxy")):
            for f in files:
                if f.endswith(".py"):
                    self.assertIn(os.path.relpath(os.path.join(directory, f), source), names)
        self.assertFalse([n for n in names if n.startswith("tests/")])
        self.assertIn("Version: %s\n" % (clientproxy.__version__,), metadata)
        requires = re.findall(r"^Requires-Dist: (.*)$", metadata, re.M)
        self.assertIn('hiredis; extra == "redis"', requires)
        self.assertFalse([r for r in requires if r.startswith("hiredis") and "extra" not in r])

        venv = os.path.join(self.work, "venv")
        self.command([sys.executable, "-m", "venv", "--without-pip", venv])
        python = os.path.join(venv, "bin", "python")
        self.command(
            [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
            + ["--no-deps", "--no-index", "--disable-pip-version-check", wheel]
        )
        [sitePackages] = self.command(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).split()
        import twisted
        import wokkel

        dependencies = {
            os.path.dirname(os.path.dirname(module.__file__)) for module in (twisted, wokkel)
        }
        with open(os.path.join(sitePackages, "dependencies.pth"), "w") as f:
            f.write("\n".join(sorted(dependencies)) + "\n")

        clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        where = self.command(
            [python, "-c", "import clientproxy; print(clientproxy.__file__)"],
            cwd=self.work,
            env=clean,
        )
        self.assertTrue(where.startswith(sitePackages), where)
        version = self.command(
            [python, "-c", "import sys; from twisted.scripts.twistd import run; sys.exit(run())"]
            + ["clientproxy", "--version"],
            cwd=self.work,
            env=clean,
        )
        self.assertTrue(
            version.startswith("clientproxy %s (" % (clientproxy.__version__,)), version
        )
