"""Shared fixtures: a seeded qcdaemon "world" on a real DuckDB file, and a real server over it.

The world is the demo that ``qcdaemon.demo.bootstrap`` seeds plus a few users, projects, pipelines
and runs for scoping tests (see ``build_world`` and the names below: an admin, a user of another
lab, a demo-project member who owns no demo run, a writable pipeline with runs of two owners).  Building it hashes passwords with scrypt and
parses the demo's MaxQuant output, so it is built **once per session** into a template data
directory; each test gets its own copy of that directory (a real, private DuckDB file in
``tmp_path``), so tests may change anything without affecting each other.

Servers are real: ``aiohttp_client(create_app(...))`` listens on a loopback socket.
Nothing of qcdaemon's own code is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientSession, CookieJar, FormData
from aiohttp.test_utils import TestClient, TestServer

from qcdaemon.config import Config, config_from_dict
from qcdaemon.core import security
from qcdaemon.server import create_app
from qcdaemon.service import demo
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import AsyncStore, Store
from qcdaemon.tools.maxquant_parse import ProteinGroup

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
SMALL2_RAW = TEST_DATA / "raw" / "small2.RAW"
MAXQUANT_EXAMPLE0 = TEST_DATA / "maxquant" / "tmt11" / "example-0"

# -- a bare store with one pipeline, and the writer thread held --------------------------------


def lab_pipeline(store: Store) -> int:
    """A user, a project and one pipeline in an empty store: the pipeline's id."""
    uid = store.create_user("lab@example.org", None, True)
    pid = store.create_project("Lab", "lab", "", uid)
    return int(store.create_pipeline(pid, "QC", "qc", "/tmp/qc", rawtools_args="")["id"])


@contextlib.asynccontextmanager
async def writer_held(astore: AsyncStore) -> AsyncIterator[asyncio.Future[Any]]:
    """The store's writer thread busy in a call that waits until the block ends (no timing: what
    the block issues queues up behind it for certain); yields that call's future."""
    release, busy = threading.Event(), threading.Event()

    def hold(_store: Store) -> None:
        busy.set()
        release.wait(30)

    holder = asyncio.ensure_future(astore.call(hold))
    try:
        await asyncio.to_thread(busy.wait, 30)
        yield holder
    finally:
        release.set()
        await holder


# -- the people and places of the seeded world ---------------------------------------------------

DEMO_USER = "user@email.com"  # bootstrap's user: owns the three demo runs
ADMIN = "admin@example.org"  # admin: sees and changes everything
OTHER = "other@example.org"  # non-admin in another project only
MEMBER = "member@example.org"  # member of the demo project who owns no demo runs

PASSWORDS = {
    DEMO_USER: "pw-demo-Secret1",
    ADMIN: "pw-admin-Secret2",
    OTHER: "pw-other-Secret3",
    MEMBER: "pw-member-Secret4",
}

DEMO_PROJECT = "demo-project"
DEMO_PIPELINE = "tmt-qc-demo"  # read-only, three runs
LAB_PIPELINE = "lab-qc"  # writable pipeline of the demo project (uploads go here)
SHARED_PROJECT = "aardvark-shared"  # created after the demo, DEMO_USER is a member: tests ordering by name
EMPTY_PIPELINE = "empty-pipeline"  # in SHARED_PROJECT, no runs
OTHER_PROJECT = "other-lab"  # OTHER's project, invisible to DEMO_USER and MEMBER
OTHER_PIPELINE = "other-pipeline"
ADMIN_PROJECT = "zulu-admin-only"  # created by ADMIN, no members

# The demo's displayed raw-file names (bootstrap's RUNS)
DEMO_SA001 = "SA001-R3-C-2ulF.raw"  # RawTools (2019) + a small MaxQuant output (19 contaminant groups)
DEMO_SA002 = "200304-SA002-R3-G-V14-90min-AGC90-MS2-1-2.raw"  # MaxQuant only (no acquisition date)
DEMO_SMALL2 = "small2.RAW"  # RawTools only (2018)


def make_config(data_dir: Path, **sections: Mapping[str, Any]) -> Config:
    """A validated Config whose data and logs live under ``data_dir``; extra sections merge in."""
    data: dict[str, Any] = {"paths": {"data_dir": str(data_dir), "log_dir": str(data_dir / "logs")}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_dict(data)


# -- the world --------------------------------------------------------------------------------


@dataclass
class World:
    """One private, seeded qcdaemon: config, store, service, and the names tests refer to."""

    cfg: Config
    store: AsyncStore
    svc: QcService
    users: dict[str, dict[str, Any]]  # email -> user row
    runs: dict[str, str]  # label -> run key ("rf12")
    pipelines: dict[str, dict[str, Any]]  # "project/pipeline" -> pipeline row
    _tokens: dict[str, str] = field(default_factory=dict)
    _closed: bool = False

    @property
    def data_dir(self) -> Path:
        return self.cfg.data_dir

    def pipeline(self, project: str, pipeline: str) -> dict[str, Any]:
        return self.pipelines[f"{project}/{pipeline}"]

    async def token(self, email: str) -> str:
        """The user's API token, made (or fetched) through the service as ``POST /api/token`` does.

        Cached per world: a test that revokes a token should mint the next one with
        ``svc.token_create`` (or over HTTP), not with this helper."""
        if email not in self._tokens:
            token, _created = await self.svc.token_create(self.users[email])
            self._tokens[email] = token
        return self._tokens[email]

    def close(self) -> None:
        """Close the store (idempotent: a test may close it early to read the file directly)."""
        if not self._closed:
            self._closed = True
            self.store.close()

    async def run(self, label_or_key: str) -> dict[str, Any]:
        key = self.runs.get(label_or_key, label_or_key)
        return await self.store.call(Store.run, int(key[2:]))


async def build_world(cfg: Config) -> dict[str, Any]:
    """Seed a data directory: the demo, then users/projects/pipelines/runs for scoping.

    Returns what the tests need to know about it (user rows, run keys, pipeline rows).
    """
    store = await asyncio.to_thread(AsyncStore, cfg.db_path, cfg.store)
    try:
        svc = QcService(store, cfg, security.load_or_create_key(cfg.data_dir / "secret.key"))
        await demo.bootstrap(svc, DEMO_USER, PASSWORDS[DEMO_USER])
        await svc.add_user(ADMIN, PASSWORDS[ADMIN], admin=True)
        await svc.add_user(OTHER, PASSWORDS[OTHER])
        await svc.add_user(MEMBER, PASSWORDS[MEMBER])
        await svc.add_member(DEMO_PROJECT, MEMBER)
        await svc.add_pipeline(DEMO_PROJECT, "Lab QC")
        await svc.add_project("Aardvark Shared", "shared by the demo user", members=[DEMO_USER],
                              created_by=ADMIN)
        await svc.add_pipeline(SHARED_PROJECT, "Empty Pipeline")
        await svc.add_project("Other Lab", "another lab", created_by=OTHER)
        await svc.add_pipeline(OTHER_PROJECT, "Other Pipeline")
        await svc.add_project("Zulu Admin Only", "", created_by=ADMIN)

        users = {e: await store.call(Store.user_by_email, e) for e in PASSWORDS}
        pipelines = {f"{p['project_slug']}/{p['slug']}": p for p in await store.call(Store.pipelines_all)}
        runs: dict[str, str] = {}
        for r in await store.call(Store.runs_of, pipelines[f"{DEMO_PROJECT}/{DEMO_PIPELINE}"]["id"]):
            runs[{DEMO_SA001: "sa001", DEMO_SA002: "sa002", DEMO_SMALL2: "small2"}[r["name"]]] = r["run_key"]

        lab = pipelines[f"{DEMO_PROJECT}/{LAB_PIPELINE}"]
        t0 = dt.datetime(2024, 1, 1, 8, 0)
        lab_runs = [
            ("lab_user", "lab-user.raw", DEMO_USER, 0),
            ("lab_member", "lab-member.raw", MEMBER, 1),
            ("dup_a", "dup.raw", DEMO_USER, 2),
            ("dup_b", "dup.raw", DEMO_USER, 3),
        ]
        for label, name, owner, hours in lab_runs:
            run = await store.call(Store.create_run, lab["id"], name, source="upload", owner_id=users[owner]["id"],
                                         state="done", acquired_at=t0 + dt.timedelta(hours=hours))
            runs[label] = run["run_key"]
        # protein groups shared by two lab runs (means), and a contaminant / a decoy;
        # lab_user also reports TMT channels beyond 11 (TMT16 kits are not cut at 11)
        def group(ids: str, score: float, intensity: float, *, con: bool = False, rev: bool = False) -> ProteinGroup:
            return ProteinGroup(ids, f">{ids}", score, intensity, con, rev, False,
                                tuple(float(n) * score for n in range(1, 17)), {"Peptides": int(score)})

        await store.call(Store.put_protein_groups, int(runs["lab_user"][2:]), [
            group("LAB|SHARED", 10.0, 100.0), group("CON__LAB", 50.0, 5.0, con=True),
            group("REV__LAB", 1.0, 1.0, rev=True)])
        await store.call(Store.put_protein_groups, int(runs["dup_a"][2:]), [group("LAB|SHARED", 30.0, 300.0)])
        await store.call(Store.put_qc_values, int(runs["lab_user"][2:]), "maxquant", {
            "N_protein_groups": 3, **{f"TMT{n}_missing_values": n for n in range(1, 17)},
            **{f"TMT{n}_protein_group_count": 3 for n in range(1, 17)}})

        other = pipelines[f"{OTHER_PROJECT}/{OTHER_PIPELINE}"]
        run = await store.call(Store.create_run, other["id"], "other.raw", source="upload", owner_id=users[OTHER]["id"],
                                     state="done", acquired_at=t0)
        runs["other"] = run["run_key"]
        return {"users": users, "runs": runs, "pipelines": pipelines}
    finally:
        await asyncio.to_thread(store.close)


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The seeded data directory, built once; tests work on copies (``world``)."""
    data_dir = tmp_path_factory.mktemp("template") / "data"
    info = asyncio.run(build_world(make_config(data_dir)))
    info["data_dir"] = data_dir
    return info


async def open_world(template: dict[str, Any], data_dir: Path, **sections: Mapping[str, Any]) -> World:
    """A private copy of the seeded template in ``data_dir``, opened; ``world.close()`` after use."""
    src = str(template["data_dir"])
    shutil.copytree(src, data_dir)
    cfg = make_config(data_dir, **sections)
    store = AsyncStore(cfg.db_path, cfg.store)
    # pipeline folders are absolute paths in the database: point them at the copy
    await store.call(Store.execute, "UPDATE pipelines SET path = replace(path, ?, ?)", [src, str(data_dir)])
    pipelines = {k: {**p, "path": p["path"].replace(src, str(data_dir))} for k, p in template["pipelines"].items()}
    svc = QcService(store, cfg, security.load_or_create_key(data_dir / "secret.key"))
    return World(cfg, store, svc, dict(template["users"]), dict(template["runs"]), pipelines)


@pytest.fixture
async def world_factory(world_template: dict[str, Any], tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[World]]]:
    """``await world_factory(server={"max_upload_mb": 1})``: a private copy of the seeded world."""
    opened: list[World] = []

    async def make(**sections: Mapping[str, Any]) -> World:
        opened.append(await open_world(world_template, tmp_path / f"data{len(opened)}", **sections))
        return opened[-1]

    yield make
    for w in opened:
        w.close()


@pytest.fixture
async def world(world_factory: Callable[..., Awaitable[World]]) -> World:
    return await world_factory()


# -- talking to a real server -----------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    text: str
    set_cookies: list[str]

    @property
    def data(self) -> Any:
        return json.loads(self.text)

    @property
    def is_json(self) -> bool:
        return self.headers.get("Content-Type", "").startswith("application/json")


ENCODINGS = ("json", "urlencoded", "multipart")


def form_pairs(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A request dict as form fields: lists are repeated keys, booleans true/false, None empty."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, bool):
                v = "true" if v else "false"
            pairs.append((key, "" if v is None else str(v)))
    return pairs


def encode(data: Mapping[str, Any] | None, enc: str) -> dict[str, Any]:
    """Keyword arguments for ``client.request`` carrying ``data`` in the given encoding."""
    if data is None:
        return {}
    if enc == "json":
        return {"data": json.dumps(data), "headers": {"Content-Type": "application/json"}}
    if enc == "urlencoded":
        return {"data": form_pairs(data)}
    if enc == "multipart":
        form = FormData(default_to_multipart=True)
        for k, v in form_pairs(data):
            form.add_field(k, v)
        return {"data": form}
    raise ValueError(enc)


class Api:
    """A client of one real server; ``who`` picks the user whose token authenticates a call."""

    def __init__(self, client: TestClient, world: World) -> None:
        self.client = client
        self.world = world

    def url(self, path: str = "/") -> str:
        return str(self.client.make_url(path))

    async def call(
        self,
        path: str,
        data: Mapping[str, Any] | None = None,
        *,
        who: str | None = DEMO_USER,
        enc: str = "json",
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        raw: Any = None,
    ) -> Reply:
        """``data`` is encoded as ``enc`` says; ``raw`` (bytes, str, FormData) is sent as it is."""
        req = encode(data, enc) if raw is None else {"data": raw}
        hdrs = {**req.pop("headers", {}), **(headers or {})}
        if who is not None:
            hdrs["Authorization"] = f"Token {await self.world.token(who)}"
        async with self.client.request(method, path, headers=hdrs, allow_redirects=False, **req) as resp:
            text = await resp.text(errors="replace")
            return Reply(resp.status, resp.headers.copy(), text, resp.headers.getall("Set-Cookie", []))

    async def ok(self, path: str, data: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        """The JSON answer of a call that must succeed (200 or 201)."""
        r = await self.call(path, data, **kw)
        assert r.status in (200, 201), (r.status, r.text)
        return r.data

    async def qc(self, pipeline: str = DEMO_PIPELINE, project: str = DEMO_PROJECT, *, who: str | None = DEMO_USER,
                 enc: str = "json", **fields: Any) -> dict:
        """The /api/qc-data answer for a pipeline (``fields``: data_range, columns)."""
        return await self.ok("/api/qc-data", {"project": project, "pipeline": pipeline, **fields}, who=who, enc=enc)


@pytest.fixture
def make_api(aiohttp_client: Callable[..., Awaitable[TestClient]]) -> Callable[[World], Awaitable[Api]]:
    """``await make_api(world)``: a real server over ``world`` and a client of it."""

    async def make(w: World) -> Api:
        return Api(await aiohttp_client(create_app(w.svc, w.cfg)), w)

    return make


@pytest.fixture
async def api(world: World, make_api: Callable[[World], Awaitable[Api]]) -> Api:
    return await make_api(world)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_api(world_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """One world and server for a whole module of tests that only read.

    The module's tests must run in the module's event loop: ``pytest.mark.asyncio(loop_scope="module")``.
    """
    w = await open_world(world_template, tmp_path_factory.mktemp("shared") / "data")
    client = TestClient(TestServer(create_app(w.svc, w.cfg), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Api(client, w)
    finally:
        await client.close()
        w.close()


CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]*)"')


class Browser:
    """A web client with its own cookie jar, doing what contract.md's curl script does."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.session = ClientSession(cookie_jar=CookieJar(unsafe=True))
        self.csrf: str | None = None  # the last csrfmiddlewaretoken seen on a page

    @property
    def base(self) -> str:
        return self.api.url("/")

    def cookie(self) -> str | None:
        for c in self.session.cookie_jar:
            if c.key == "qcd_session":
                return c.value
        return None

    async def request(self, method: str, path: str, *, data: Any = None, headers: Mapping[str, str] | None = None,
                      csrf: bool = False) -> Reply:
        """``csrf=True`` adds what the contract's curl sends: X-CSRFToken and a same-origin Referer."""
        hdrs = dict(headers or {})
        if csrf:
            hdrs.setdefault("X-CSRFToken", self.csrf or "")
            hdrs.setdefault("Referer", self.base)
        async with self.session.request(method, self.api.url(path), data=data, headers=hdrs,
                                        allow_redirects=False) as resp:
            text = await resp.text(errors="replace")
            reply = Reply(resp.status, resp.headers.copy(), text, resp.headers.getall("Set-Cookie", []))
        if resp.content_type == "text/html" and (m := CSRF_INPUT.search(text)):
            self.csrf = m.group(1)
        return reply

    async def get(self, path: str = "/", **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, data: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, data=data, **kw)

    async def login(self, email: str, password: str | None = None, next_url: str = "/") -> Reply:
        """GET / (login form), then POST it back with the credentials, like the contract's script."""
        await self.get("/")
        form = {"username": email, "password": PASSWORDS[email] if password is None else password,
                "csrfmiddlewaretoken": self.csrf or "", "next": next_url}
        return await self.post("/", data=form, headers={"Referer": self.base})

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def browsers() -> AsyncIterator[Callable[[Api], Browser]]:
    """``browsers(api)``: a new browser (own cookies) for the server of ``api``."""
    made: list[Browser] = []

    def make(api: Api) -> Browser:
        made.append(Browser(api))
        return made[-1]

    yield make
    for b in made:
        await b.close()


# -- files and processes -------------------------------------------------------------------


def files_under(root: Path) -> set[Path]:
    """Every file below ``root`` (relative paths)."""
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def subprocess_env() -> dict[str, str]:
    """Environment for ``python -m qcdaemon`` subprocesses: this checkout importable, no proxies."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("NO_COLOR", None)
    return env


def run_qcdaemon(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qcdaemon", *args], input=stdin, capture_output=True, text=True,
        timeout=timeout, cwd=REPO, env=subprocess_env(),
    )


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


def to_toml(data: dict[str, Any]) -> str:
    """Enough TOML for configuration files: tables, sub-tables, arrays of tables."""
    lines: list[str] = []

    def table(prefix: str, values: dict[str, Any], header: str) -> None:
        lines.append(header)
        subs = []
        for k, v in values.items():
            if isinstance(v, dict):
                subs.append((k, v))
            else:
                lines.append(f"{k} = {toml_value(v)}")
        lines.append("")
        for k, v in subs:
            table(f"{prefix}.{k}", v, f"[{prefix}.{k}]")

    for name, value in data.items():
        if isinstance(value, list):
            for item in value:
                table(name, item, f"[[{name}]]")
        else:
            table(name, value, f"[{name}]")
    return "\n".join(lines)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(to_toml(data))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_fields(cls: type = Config, prefix: str = "") -> list[str]:
    """Dotted names of every leaf field of the configuration dataclasses (for the docs test)."""
    from qcdaemon import config as c
    from qcdaemon import hubcfg, remotecfg

    subs = {
        (Config, "server"): c.ServerConfig, (Config, "paths"): c.PathsConfig, (Config, "store"): c.StoreConfig,
        (Config, "engine"): c.EngineConfig, (Config, "log"): c.LogConfig, (Config, "scheduler"): c.SchedulerConfig,
        (Config, "watch"): c.WatchConfig, (c.EngineConfig, "rawtools"): c.ToolConfig,
        (c.EngineConfig, "maxquant"): c.MaxQuantConfig, (c.EngineConfig, "search"): c.SearchConfig,
        (Config, "alerts"): c.AlertsConfig, (c.AlertsConfig, "channel"): c.AlertChannelConfig,
        (c.AlertsConfig, "rule"): c.AlertRuleConfig, (Config, "metrics"): c.MetricsConfig,
        (Config, "qc"): c.QcPipelineConfig,
    }
    out: list[str] = []
    for f in dataclasses.fields(cls):
        if cls is Config and f.name in ("mode", "source"):
            continue  # set by the loader, not keys of the file
        if cls is Config and f.name == "executors":  # the executor keys of [engine.<stage>] (remotecfg)
            out += [f"engine.maxquant.{name}" for name in remotecfg.field_names]
            continue
        if cls is Config and f.name == "hub":  # [hub] and [[hub.source]] (qcdaemon/hubcfg.py)
            out += [f"hub.{g.name}" for g in dataclasses.fields(hubcfg.HubConfig) if g.name != "sources"]
            out += [f"hub.source.{g.name}" for g in dataclasses.fields(hubcfg.HubSource)]
            continue
        sub = subs.get((cls, f.name))
        if sub is not None:
            out += config_fields(sub, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def read_only_world() -> tuple[Any, Any]:
    """``api`` and ``world`` fixtures for a module that only reads: they hand out the module-wide
    ``shared_api`` instead of a fresh world per test.  Use as ``api, world = read_only_world()``."""

    @pytest.fixture(name="api")
    def _api(shared_api: Api) -> Api:
        return shared_api

    @pytest.fixture(name="world")
    def _world(shared_api: Api) -> World:
        return shared_api.world

    return _api, _world


# The suite runs in pytest-xdist workers (`make test`).  Their queue follows collection order, so the
# long tests go first (the heavy harnesses, then the folders whose tests each start daemons, clusters
# or browsers) and the many short ones fill in behind them: a long test collected last would run
# alone at the end while the other worker idles (longest first: Graham's LPT rule).  The sort is
# stable and the same in every worker, as xdist requires.
_LONG_FOLDERS = ("e2e", "remote", "alerts", "search")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("heavy"):
            return 0
        parts = Path(str(item.path)).relative_to(Path(__file__).parent).parts
        return 1 if parts and parts[0] in _LONG_FOLDERS else 2

    items.sort(key=weight)
