# -*- test-case-name: tests.test_config -*-
"""
The configuration file: TOML, one C{[[proxy]]} table per proxy, with the
names of the command-line options as keys (C{secret-file} or
C{secret_file}); process-wide keys (C{metrics-port},
C{metrics-interface}) at the top. For example::

    metrics-port = 9101

    [[proxy]]
    jid = "focus.example.org"
    target = "focus@auth.example.org"
    secret-file = "/etc/clientproxy/focus.secret"
    affinity = "attribute:room"

    [[proxy]]
    jid = "search.example.org"
    target = "search@example.org"
    deny = ["spam.example"]

Each table is checked by the very same L{clientproxy.tap.Options} as the
command line, so a value means the same in both places. An unknown key, a
value of the wrong type or a missing required key is reported in one line
naming the file, the proxy and the key. The secret comes from
C{secret-credential} (a systemd credential), C{secret-file} or
C{$CLIENTPROXY_SECRET}: an inline C{secret} is refused, a configuration file
being easier to leak than a file of its own.

Read with C{tomllib} (Python 3.11 and later) or its backport C{tomli}.
"""

from clientproxy.ops.settings import PROCESS, SETTINGS

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

#: Keys that apply to the whole process, at the top of the file.
PROCESS_KEYS = {s.name: s.kind for s in SETTINGS if s.when == PROCESS}

#: Options that may be given several times: a list in the file.
LIST_KEYS = tuple(s.name for s in SETTINGS if s.kind is list)

#: Options that cannot be in the file.
REFUSED_KEYS = {
    "secret": "put the secret in a systemd credential named by secret-credential, a file "
    "named by secret-file, or $CLIENTPROXY_SECRET",
    "config": "a configuration file cannot name another",
    "help-strategies": "not a setting",
}


class ConfigError(Exception):
    """
    The configuration file cannot be used; the message says where and why.
    """


def _key(name):
    return name.replace("_", "-")


def _argument(where, key, value, kind):
    """
    The command-line form of C{value} for option C{key}, checked against
    the option's C{kind} (C{int}, C{float} or C{str}).
    """
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if kind is str and isinstance(value, str):
        return value
    expected = {int: "an integer", float: "a number", str: "a string"}[kind]
    raise ConfigError("%s: %r must be %s, not %r" % (where, key, expected, value))


def proxyArguments(where, table, kinds):
    """
    The command-line arguments that say what the C{[[proxy]]} C{table} says.

    @param kinds: C{{option name: int, float or str}} for every option.
    """
    arguments = []
    for name, value in table.items():
        key = _key(name)
        if key in REFUSED_KEYS:
            raise ConfigError("%s: %r: %s" % (where, name, REFUSED_KEYS[key]))
        if key in PROCESS_KEYS:
            raise ConfigError(
                "%s: %r belongs at the top of the file, not in a proxy" % (where, name)
            )
        if key in LIST_KEYS:
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ConfigError("%s: %r must be a list of strings" % (where, name))
            for entry in values:
                arguments += ["--" + key, entry]
            continue
        if key not in kinds:
            raise ConfigError("%s: unknown key %r" % (where, name))
        if kinds[key] is bool:
            if not isinstance(value, bool):
                raise ConfigError("%s: %r must be true or false, not %r" % (where, name, value))
            arguments += ["--" + key] if value else []
            continue
        arguments += ["--" + key, _argument(where, key, value, kinds[key])]
    return arguments


def readConfig(path):
    """
    Read the file at C{path}: C{(process settings, [proxy tables])}.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError("%s: cannot read it: %s" % (path, e.strerror))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s: not valid TOML: %s" % (path, e))
    proxies = data.pop("proxy", None)
    if (
        not isinstance(proxies, list)
        or not proxies
        or not all(isinstance(p, dict) for p in proxies)
    ):
        raise ConfigError("%s: needs at least one [[proxy]] table" % (path,))
    process = {}
    for name, value in data.items():
        key = _key(name)
        if key not in PROCESS_KEYS:
            raise ConfigError("%s: unknown key %r at the top of the file" % (path, name))
        _argument(path, key, value, PROCESS_KEYS[key])
        process[key] = value
    return process, proxies


def proxyName(path, number, table):
    """
    How an error names a proxy: C{FILE: proxy N (JID)}.
    """
    jid = table.get("jid")
    return "%s: proxy %d%s" % (path, number, " (%s)" % (jid,) if isinstance(jid, str) else "")
