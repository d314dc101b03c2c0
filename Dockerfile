# cdrecon: a small image running `cdrecon serve` as a non-root user.
FROM python:3.11-slim AS build
# A C compiler lets the wheel's build compile the hot path with mypyc (setup.py); the image
# below installs the built wheel and needs neither.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md alembic.ini ./
COPY app ./app
COPY parsers ./parsers
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# /data holds only the database: no home-directory skeleton in the volume.
RUN useradd --system --uid 10001 --home-dir /data --no-create-home cdrecon \
    && mkdir /data && chown cdrecon: /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER cdrecon
WORKDIR /data
VOLUME ["/data"]
# Inside a container the API must listen beyond loopback to be reachable through -p.
ENV CDRECON_DATABASE_URL=sqlite+aiosqlite:////data/cdrecon.db \
    CDRECON_HTTP=0.0.0.0:8080
EXPOSE 5514/tcp 5514/udp 6514/tcp 8080/tcp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
ENTRYPOINT ["cdrecon"]
CMD ["serve"]
