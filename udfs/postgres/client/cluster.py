"""An embedded PostgreSQL 15 cluster that lives in a project directory (e.g. ``.udfs/pg``)."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from udfs.errors import ConfigError
from udfs.threads import ONE_THREAD_ENV

SERVER_USER = "postgres"
DEFAULT_BINDIR = Path("/usr/lib/postgresql/15/bin")
SETUP_HINT = "Run scripts/setup.sh to install PostgreSQL 15 with PL/Python."

# A unix socket path "<dir>/.s.PGSQL.<port>" must fit in sun_path (108 bytes with its NUL).
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535")


def find_binaries() -> Path:
    """Return the bin directory of a PostgreSQL install that has PL/Python.

    ``UDFS_PG_BIN`` overrides the search.

    >>> find_binaries()
    PosixPath('/usr/lib/postgresql/15/bin')
    """
    if override := os.environ.get("UDFS_PG_BIN"):
        bindir = Path(override)
    elif DEFAULT_BINDIR.is_dir():
        bindir = DEFAULT_BINDIR
    elif pg_config := shutil.which("pg_config"):
        bindir = Path(_run([pg_config, "--bindir"], "pg_config").strip())
    else:
        raise ConfigError(f"No PostgreSQL in {DEFAULT_BINDIR} nor via pg_config. {SETUP_HINT}")
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (bindir / name).is_file()]
    if missing:
        expected = f"Expected initdb, pg_ctl and postgres in {bindir}"
        raise ConfigError(f"{expected}; missing: {', '.join(missing)}. {SETUP_HINT}")
    if not _plpython_library(bindir).is_file():
        raise ConfigError(f"PL/Python (plpython3.so) is not installed for {bindir}. {SETUP_HINT}")
    return bindir


def postgres_can_read(path: Path) -> bool:
    """Whether the server's OS user can read ``path`` (and enter it, if it is a directory).

    >>> postgres_can_read(Path(".venv/lib/python3.11/site-packages"))
    True
    """
    if not _as_root():  # the server runs as the current user
        return os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0))
    enter = ["-a", "-x", str(path)] if path.is_dir() else []
    test = subprocess.run(_server_cmd(["test", "-r", str(path), *enter]), check=False)
    return test.returncode == 0


AUTH_METHODS = ("trust", "password")
PASSFILE = "pgpass"


class LocalCluster:
    """A PostgreSQL cluster owned by one project, listening on 127.0.0.1 only.

    ``auth`` is chosen when the cluster is created: ``trust`` (the development default: any
    local OS user can connect as any role, superuser included) or ``password`` (SCRAM; the
    superuser's random password is kept in ``<root>/pgpass``, mode 600, which the DSN names
    with libpq's ``passfile`` parameter, so no secret is ever printed).

    ``root`` holds ``cluster.json`` (port and location), and normally ``data/``, the log and
    the socket. When the server user cannot reach ``root`` (a project under ``/root``, mode 700)
    or its path is too long for a unix socket, those go to ``/tmp/udfs-pg-<hash of root>``.

    >>> LocalCluster(Path(".udfs/pg")).up()
    'postgresql://postgres@127.0.0.1:41234/postgres'
    """

    #: Server settings, passed to pg_ctl so that postgresql.conf stays as initdb wrote it.
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "listen_addresses": "127.0.0.1",  # trust auth: never reachable from another machine
        "max_connections": "50",  # each backend holds its own sklearn and models
        "shared_buffers": "128MB",
    }

    def __init__(self, root: Path, auth: str | None = None) -> None:
        if auth is not None and auth not in AUTH_METHODS:
            raise ConfigError(f"auth must be one of {', '.join(AUTH_METHODS)}, got {auth!r}")
        self.root = Path(root).absolute()
        self.state_file = self.root / "cluster.json"
        self.auth = auth

    @property
    def passfile(self) -> Path:
        return self.root / PASSFILE

    def _dsn(self, port: int) -> str:
        if self._state().get("auth") == "password":
            return f"{_dsn(port)}?passfile={self.passfile}"
        return _dsn(port)

    @property
    def base(self) -> Path:
        """The directory the server user owns: data, log and socket."""
        return Path(self._state().get("base", self.root))

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"

    @property
    def dsn(self) -> str:
        """The DSN of the running cluster, or of the last port it used."""
        if (dsn := self.status()["dsn"]) is None:
            raise ConfigError(f"The cluster in {self.root} was never started; call up() first.")
        return dsn

    def up(self) -> str:
        """Create the cluster if needed, start it unless it runs, and return its DSN."""
        created = self._state().get("auth", "trust")
        if self.auth is not None and self.auth != created and self._state().get("base"):
            raise ConfigError(
                f"the cluster in {self.root} was created with {created} authentication; to use "
                f"{self.auth}, stop it and delete {self.root} (its data goes with it)"
            )
        if running := self._postmaster():
            return self._dsn(running[1])
        bindir = find_binaries()
        base = self._prepare_base()
        if not (base / "data" / "PG_VERSION").is_file():
            self._initdb(bindir, base)
        saved = self._state().get("port")
        for attempt in range(3):
            port = _pick_port(saved if attempt == 0 else None)
            try:
                self._start(bindir, base, port)
                return self._dsn(port)
            except ConfigError as exc:
                # Another program can take the port between the probe and the server's bind.
                if attempt == 2 or "already in use" not in str(exc):
                    raise
        raise AssertionError("unreachable")

    def _initdb(self, bindir: Path, base: Path) -> None:
        auth = self.auth or "trust"
        initdb = [str(bindir / "initdb"), "-D", str(base / "data")]
        initdb += ["-U", "postgres", "--encoding=UTF8", "--locale=C.UTF-8"]
        if auth == "trust":
            _run(_server_cmd([*initdb, "--auth=trust"]), "initdb")
        else:
            password = secrets.token_urlsafe(24)
            # initdb reads the password from a file the server user can read; it lives only
            # for the call. The client's copy is a libpq password file, private to us.
            pwfile = base / "initdb-password"
            pwfile.write_text(password + "\n")
            uid, gid = _server_ids()
            os.chown(pwfile, uid, gid)
            pwfile.chmod(0o600)
            try:
                initdb += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
                _run(_server_cmd(initdb), "initdb")
            finally:
                pwfile.unlink(missing_ok=True)
            self.passfile.touch(mode=0o600)
            self.passfile.chmod(0o600)
            self.passfile.write_text(f"127.0.0.1:*:*:postgres:{password}\n")
        self._save_state(auth=auth)

    def _start(self, bindir: Path, base: Path, port: int) -> None:
        self._save_state(base=str(base), port=port)
        settings = {
            **self.SETTINGS,
            "port": str(port),
            # Double quotes keep a path with spaces or commas whole in this list setting.
            "unix_socket_directories": '"{}"'.format(str(base).replace('"', '""')),
        }
        options = shlex.join(f"-c{name}={value}" for name, value in settings.items())
        start = [str(bindir / "pg_ctl"), "start", "-w", "-D", str(self.data_dir)]
        start += ["-l", str(self.log_file), "-o", options]  # pg_ctl hands -o to /bin/sh
        _run(_server_cmd(start), "pg_ctl start", log=self.log_file)

    def down(self) -> None:
        """Stop the cluster (fast shutdown: open sessions are rolled back). No-op if stopped."""
        if not self._postmaster():
            return
        stop = [str(find_binaries() / "pg_ctl"), "stop", "-w", "-m", "fast"]
        _run(_server_cmd([*stop, "-D", str(self.data_dir)]), "pg_ctl stop", log=self.log_file)

    def destroy(self) -> None:
        """Stop the cluster and delete all its files, including a ``/tmp`` fallback."""
        self.down()
        for path in {self.base, self.root}:
            shutil.rmtree(path, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        """Report ``running``, ``port``, ``dsn``, ``pid``, ``data_dir`` and ``log_file``."""
        running = self._postmaster()
        port = running[1] if running else self._state().get("port")
        return {
            "running": running is not None,
            "port": port,
            "dsn": self._dsn(port) if port is not None else None,
            "pid": running[0] if running else None,
            "data_dir": str(self.data_dir),
            "log_file": str(self.log_file),
        }

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of a live postmaster, from the pid file it keeps in the data dir."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:  # a stale pid file left by a crash
            return None
        except PermissionError:  # alive, but owned by the server user
            pass
        return pid, port

    def _prepare_base(self) -> Path:
        """Create the directory for data, log and socket, owned by the server user."""
        if (saved := self._state().get("base")) and (Path(saved) / "data" / "PG_VERSION").is_file():
            return Path(saved)
        self.root.mkdir(parents=True, exist_ok=True)
        base = self.root
        if not postgres_can_read(self.root) or len(str(self.root)) > _MAX_SOCKET_DIR:
            digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
            base = Path("/tmp") / f"udfs-pg-{digest}"  # not $TMPDIR: it may be private too
        data = base / "data"
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        uid, gid = _server_ids()
        for path in (base, data):
            info = path.lstat()
            # /tmp is shared: refuse a directory someone else planted there.
            if stat.S_ISLNK(info.st_mode) or info.st_uid not in (uid, os.geteuid()):
                raise ConfigError(f"{path} is owned by uid {info.st_uid}, expected uid {uid}.")
            os.chown(path, uid, gid)
        data.chmod(0o700)  # the server refuses a data dir others can read
        if not postgres_can_read(base):
            raise ConfigError(
                f"The {SERVER_USER} OS user cannot enter {base}: chmod o+x {base.parent}"
            )
        return base

    def _state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save_state(self, **state: Any) -> None:
        self.state_file.write_text(json.dumps(self._state() | state, indent=2) + "\n")


def _as_root() -> bool:
    return os.geteuid() == 0


def _server_ids() -> tuple[int, int]:
    """uid and gid the server runs as: the postgres user under root, else ourselves."""
    if not _as_root():
        return os.geteuid(), os.getegid()
    try:
        user = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ConfigError(f"There is no {SERVER_USER!r} OS user. {SETUP_HINT}") from None
    return user.pw_uid, user.pw_gid


def _server_cmd(args: list[str]) -> list[str]:
    # initdb and pg_ctl refuse to run as root.
    return ["runuser", "-u", SERVER_USER, "--", *args] if _as_root() else args


def _run(cmd: list[str], what: str, log: Path | None = None) -> str:
    # PL/Python runs Debian's python3: our interpreter's PYTHON* settings must not reach it.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    # cwd "/": the server user may not be allowed into our working directory.
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env | ONE_THREAD_ENV, cwd="/", check=False
    )
    if proc.returncode != 0:
        message = f"{what} failed with exit code {proc.returncode}: {proc.stderr.strip()}"
        if log is not None and log.is_file():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            message += f"\nLast lines of {log}:\n{tail}"
        raise ConfigError(message, command=cmd)
    return proc.stdout


def _plpython_library(bindir: Path) -> Path:
    debian = bindir.parent / "lib" / "plpython3.so"
    pg_config = bindir / "pg_config"
    if debian.is_file() or not pg_config.is_file():
        return debian
    return Path(_run([str(pg_config), "--pkglibdir"], "pg_config").strip()) / "plpython3.so"


def _pick_port(saved: int | None) -> int:
    """The saved port if it is still free (another program may have taken it), else a new one."""
    with socket.socket() as probe:
        # As the server does, so that a connection in TIME_WAIT does not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", saved or 0))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _dsn(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"
