# clientproxy's container image (see docs/jitsi.md, "docker-jitsi-meet"):
#
#   docker build -t clientproxy .
#   docker run -v ./clientproxy.toml:/etc/clientproxy/clientproxy.toml:ro \
#       -v ./focus.secret:/run/secrets/clientproxy_secret:ro clientproxy
#
# An official Python slim base, clientproxy in a virtual environment built in a
# first stage (nothing of the build is left but the environment), run by a user
# of its own. The configuration is /etc/clientproxy/clientproxy.toml (or give
# options after the image name); the secret comes from a file (secret-file: a
# Docker secret, /run/secrets/...) or $CLIENTPROXY_SECRET. The health check is
# /readyz, so the configuration must set metrics-port = 9347.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/clientproxy
COPY setup.py setup.cfg README.md /src/
COPY clientproxy /src/clientproxy
COPY twisted/plugins/clientproxy_plugin.py /src/twisted/plugins/clientproxy_plugin.py
# Every dependency comes as a wheel: no compiler is needed, nor left. Asking
# for the help once writes Twisted's plugin cache while the files are still
# writable.
RUN /opt/clientproxy/bin/pip install /src \
    && /opt/clientproxy/bin/twistd clientproxy --help > /dev/null

FROM python:3.11-slim
COPY --from=build /opt/clientproxy /opt/clientproxy
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/clientproxy \
        --create-home --shell /usr/sbin/nologin clientproxy \
    && mkdir -p /etc/clientproxy
ENV PATH=/opt/clientproxy/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER clientproxy
WORKDIR /var/lib/clientproxy
VOLUME ["/var/lib/clientproxy"]
EXPOSE 9347
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9347/readyz', timeout=2)"]
ENTRYPOINT ["twistd", "--nodaemon", "--pidfile=", "--logfile=-", "clientproxy"]
CMD ["--config", "/etc/clientproxy/clientproxy.toml"]
