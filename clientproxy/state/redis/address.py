# -*- test-case-name: tests.test_redisclient -*-
"""
Where Redis is and how to reach it: the C{--redis} URL, read strictly.

    redis://[user[:password]@]host[:port][/db]        plain TCP (port 6379)
    rediss://[user[:password]@]host[:port][/db]       TLS, the server's name checked
    unix://[user[:password]@]/path/to/socket[?db=N]   a Unix socket
    redis+sentinel://[user[:password]@]host1[:port],host2[:port]/service[/db]
                                                      the master Sentinel names (port 26379)

Anything the client would not use (a query key but C{db} on a Unix socket,
a path that is not a database number, a fragment, an empty host) is
refused: a URL that says more than is done is a mistake to report at
start, not to ignore. The password may also come from a file or the
environment (L{clientproxy.tap}); it never appears in what L{redacted}
gives, which is what every message and log line shows.
"""

from urllib.parse import parse_qsl, unquote, urlsplit

#: Seconds a Redis command may wait for its reply by default.
DEFAULT_DEADLINE = 3.0

#: The Sentinel's own port, when a sentinel's is not given.
SENTINEL_PORT = 26379


def redactURL(url):
    """
    C{url} with the password, if any, replaced by C{***}; for a URL that
    does not even parse, so everything between C{//} and the last C{@}
    after the user name is hidden.
    """
    scheme, slashes, rest = url.partition("//")
    if not slashes or "@" not in rest:
        return url
    userinfo, _, tail = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return "%s//%s%s@%s" % (scheme, user, ":***" if colon else "", tail)


class RedisAddress:
    """
    A parsed C{--redis} URL, and the settings that go with it.

    @ivar kind: C{tcp}, C{unix} or C{sentinel}.
    @ivar tls: whether the link is TLS (C{rediss://}).
    @ivar host: the host, for C{tcp}.
    @ivar port: the port, for C{tcp}.
    @ivar path: the socket's path, for C{unix}.
    @ivar sentinels: C{[(host, port)]}, for C{sentinel}.
    @ivar service: the master's name Sentinel knows, for C{sentinel}.
    @ivar db: the database number.
    @ivar username: the ACL user, or C{None} (Redis's C{default}).
    @ivar password: the password, or C{None}: no AUTH.
    @ivar caFile: with TLS, a PEM file of the authorities to trust, or
        C{None} for the system's.
    @ivar deadline: seconds a command may wait for its reply.
    """

    def __init__(
        self,
        kind,
        tls=False,
        host=None,
        port=None,
        path=None,
        sentinels=(),
        service=None,
        db=0,
        username=None,
        password=None,
        caFile=None,
        deadline=DEFAULT_DEADLINE,
        url=None,
    ):
        self.kind = kind
        self.tls = tls
        self.host = host
        self.port = port
        self.path = path
        self.sentinels = list(sentinels)
        self.service = service
        self.db = db
        self.username = username
        self.password = password
        self.caFile = caFile
        self.deadline = deadline
        self._url = url

    def redacted(self):
        """
        The URL with no password in it: what messages show.
        """
        if self._url is not None:
            return redactURL(self._url)
        return "<%s Redis>" % (self.kind,)

    def __repr__(self):
        return "RedisAddress(%s)" % (self.redacted(),)

    def where(self):
        """
        Where it connects, for log lines: C{host:port}, the socket's path,
        or the Sentinel service's name.
        """
        if self.kind == "unix":
            return self.path
        if self.kind == "sentinels":
            return ", ".join("%s:%d" % sentinel for sentinel in self.sentinels)
        if self.kind == "sentinel":
            return "the master of %r (Sentinel)" % (self.service,)
        return "%s:%d" % (self.host, self.port)

    def with_(self, **changes):
        """
        A copy with C{changes} (C{password}, C{caFile}, C{deadline}, ...).
        """
        copy = RedisAddress.__new__(RedisAddress)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy


def _refuse(url, why):
    raise ValueError("%s: %s" % (why, redactURL(url)))


def _hostPort(url, text, default):
    """
    C{(host, port)} of C{host[:port]} or C{[v6]:port}.
    """
    try:
        parsed = urlsplit("//" + text)
        host, port = parsed.hostname, parsed.port
    except ValueError:
        _refuse(url, "not a valid host:port %r in" % (text,))
    if not host or parsed.username is not None or parsed.path:
        _refuse(url, "not a valid host:port %r in" % (text,))
    return host, port or default


def _database(url, text):
    if not text.isdigit() or not text.isascii():
        _refuse(url, "the database must be a number, not %r, in" % (text,))
    return int(text)


def parseURL(url):
    """
    The L{RedisAddress} of C{url}.

    @raise ValueError: it is not one of the forms above, or says something
        that would not be used; the message shows the URL redacted.
    """
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("redis", "rediss", "unix", "redis+sentinel"):
        _refuse(
            url,
            "not a redis://, rediss://, unix:// or redis+sentinel:// URL",
        )
    if scheme == "redis+sentinel":
        return _sentinelURL(url)
    try:
        parsed = urlsplit(url)
        port = parsed.port
    except ValueError as e:
        _refuse(url, "not a valid URL (%s)" % (e,))
    if parsed.fragment or url.endswith("#"):
        _refuse(url, "a fragment is not used")
    username = unquote(parsed.username) if parsed.username else None
    password = unquote(parsed.password) if parsed.password is not None else None
    query = parse_qsl(parsed.query, keep_blank_values=True, strict_parsing=False)
    if parsed.query and not query:
        _refuse(url, "a query that is not key=value")
    if scheme == "unix":
        if parsed.hostname or port is not None:
            _refuse(url, "a Unix socket's URL has no host (unix:///path?db=N)")
        if not parsed.path.startswith("/") or parsed.path == "/":
            _refuse(url, "no socket path")
        db = 0
        for key, value in query:
            if key != "db":
                _refuse(url, "unknown query key %r (only db is used)" % (key,))
            db = _database(url, value)
        if len(query) > 1:
            _refuse(url, "db given twice")
        return RedisAddress(
            "unix", path=unquote(parsed.path), db=db, username=username, password=password, url=url
        )
    if not parsed.hostname:
        _refuse(url, "no host")
    if parsed.query or url.rstrip("#").endswith("?"):
        _refuse(url, "a query is not used (the database is the path: /N)")
    path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    db = _database(url, path) if path else 0
    return RedisAddress(
        "tcp",
        tls=scheme == "rediss",
        host=parsed.hostname,
        port=port or 6379,
        db=db,
        username=username,
        password=password,
        url=url,
    )


def _sentinelURL(url):
    rest = url.partition("://")[2]
    if "?" in rest or "#" in rest:
        _refuse(url, "a query or fragment is not used")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if not hosts:
        _refuse(url, "no sentinel host")
    sentinels = [_hostPort(url, text, SENTINEL_PORT) for text in hosts.split(",")]
    parts = path.split("/") if slash else []
    if parts and parts[-1] == "":
        parts.pop()
    if not parts or not parts[0]:
        _refuse(url, "no service name (redis+sentinel://host:26379/service-name/db)")
    if len(parts) > 2:
        _refuse(url, "a path of more than service-name/db")
    db = _database(url, parts[1]) if len(parts) == 2 else 0
    return RedisAddress(
        "sentinel",
        sentinels=sentinels,
        service=unquote(parts[0]),
        db=db,
        username=username,
        password=password,
        url=url,
    )
