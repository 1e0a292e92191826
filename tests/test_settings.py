"""
Tests for L{clientproxy.ops.settings}: every option is one row, from which
the command line, the configuration file's keys, the reload's split and
the option reference in docs/operations.md are made.
"""

import inspect
import os

from twisted.trial import unittest

from clientproxy import assembly
from clientproxy.ops import config, reload, settings
from clientproxy.tap import Options

README = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "operations.md"
)


class SettingsTests(unittest.TestCase):
    def test_readmeIsTheTable(self):
        """
        The README's option reference is the one L{settings.readmeTable}
        writes: change a setting, and regenerate the README's table.
        """
        with open(README, encoding="utf-8") as f:
            text = f.read()
        header = settings.readmeTable()[0]
        start = text.index(header)
        lines = text[start:].split("\n\n", 1)[0].splitlines()
        self.assertEqual(lines, settings.readmeTable())

    def test_everyOptionIsASetting(self):
        """
        Every option of the command line (a value, a flag, or repeatable)
        is a row of the table, and every row an option.
        """
        options = Options()
        names = {p[0] for p in options.optParameters} | {f[0] for f in options.optFlags}
        names |= {s.name for s in settings.SETTINGS if s.coerce is settings.LIST}
        self.assertEqual(names, set(settings.BY_NAME))

    def test_reloadSplitFromTheTable(self):
        """
        What a reload applies and what it names as needing a restart are
        the table's, and no setting is both.
        """
        self.assertEqual(set(reload.LIVE), set(settings.named(settings.LIVE)))
        self.assertEqual(set(reload.RESTART), set(settings.named(settings.RESTART)))
        self.assertTrue(set(assembly.POLICY_SETTINGS) <= set(reload.LIVE))
        self.assertFalse(set(reload.LIVE) & set(reload.RESTART))

    def test_fileKeysFromTheTable(self):
        """
        The file's process keys and list keys, with their types, are the
        table's.
        """
        self.assertEqual(
            config.PROCESS_KEYS,
            {"metrics-port": int, "metrics-interface": str, "log-level": str, "log-format": str},
        )
        self.assertEqual(config.LIST_KEYS, ("idempotent", "allow", "deny"))

    def test_argumentsAreMakeProxys(self):
        """
        Every setting that becomes an argument names a keyword of
        L{assembly.makeProxy}, or of L{assembly.makeHandlers}, to which it
        hands the rest.
        """
        keywords = set(inspect.signature(assembly.makeProxy).parameters)
        keywords |= set(inspect.signature(assembly.makeHandlers).parameters)
        arguments = {s.argument for s in settings.SETTINGS if s.argument is not None}
        self.assertEqual(arguments - keywords, set())

    def test_minimumsChecked(self):
        """
        A value under a setting's minimum is refused, naming the option.
        """
        from twisted.python import usage

        for setting in settings.SETTINGS:
            if setting.minimum is None:
                continue
            options = {s.name: s.default for s in settings.SETTINGS}
            options[setting.name] = setting.minimum - 1
            error = self.assertRaises(usage.UsageError, settings.checkMinimums, options)
            self.assertIn("--" + setting.name, str(error))

    def test_secondsFinite(self):
        """
        A number of seconds that is no number (nan, which compares false
        with every bound) or infinite is refused, naming the option.
        """
        from twisted.python import usage

        for value in (float("nan"), float("inf")):
            options = {s.name: s.default for s in settings.SETTINGS}
            options["hold"] = value
            error = self.assertRaises(usage.UsageError, settings.checkMinimums, options)
            self.assertIn("--hold", str(error))
