"""
Packaging for clientproxy.

The C{twistd clientproxy} command is a Twisted plugin in C{twisted/plugins/}
(a directory with no C{__init__.py}: it is Twisted's plugin package, not
ours). It is installed as data of the C{twisted.plugins} package, so that
both C{pip install .} and C{pip install -e .} make it available; see
C{package_dir} for the editable case: with C{{"": "."}} an editable install
puts the project's root on the path (a static C{.pth}), where Twisted's plugin
loader finds C{twisted/plugins/}; setuptools' default import hook for editable
installs would hide it.
"""

from setuptools import find_packages, setup

setup(
    package_dir={"": "."},
    packages=find_packages(exclude=["tests", "tests.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/clientproxy_plugin.py"]},
)
