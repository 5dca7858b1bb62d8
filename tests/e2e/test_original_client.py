"""The original server's clients against qcdaemon's demo, as they make their requests and read the answers.

Written from their documented behaviour (shared spec, proteomicsqc-behaviour.md, sections 5.2, 5.6 and 6),
not from their code: ``ProteomicsQC.py`` posts JSON to the list routes and reads each answer into a
pandas DataFrame (``DateAcquired`` through ``pd.to_datetime``), uploads with a multipart ``pid`` + ``uid``
and expects 201, and flags with form-encoded ``raw_files`` names forced to ``.raw``; the dashboard reads
``response["status"]`` after each mutation.  The only change a client needs is the token header
(the original has no token; docs/api.md).  Then the compatibility decisions, one test each.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from daemonproc import DATA, Daemon

DEMO_USER, PROJECT, PIPELINE = "user@email.com", "demo-project", "tmt-qc-demo"


class OriginalClient:
    """What ``ProteomicsQC.py`` does, with ``Authorization: Token`` added."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base, self.token = base, token

    def post(self, route: str, *, json_body: Any = None, form: list[tuple[str, str]] | None = None,
             body: bytes | None = None, content_type: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        if json_body is not None:
            body, content_type = json.dumps(json_body).encode(), "application/json"
        elif form is not None:
            body, content_type = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.base + route, data=body or b"", method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    # -- the client's methods -----------------------------------------------------------------

    def get_projects(self) -> pd.DataFrame:
        return pd.DataFrame(self.post("/api/projects", json_body={})[1])

    def get_pipelines(self, project: str) -> pd.DataFrame:
        return pd.DataFrame(self.post("/api/pipelines", json_body={"project": project})[1])

    def get_qc_data(self, project: str, pipeline: str, data_range: int | None = None,
                    columns: list[str] | None = None) -> pd.DataFrame:
        body: dict[str, Any] = {"project": project, "pipeline": pipeline, "data_range": data_range}
        if columns:
            body["columns"] = columns
        df = pd.DataFrame(self.post("/api/qc-data", json_body=body)[1])
        if "DateAcquired" in df:
            df["DateAcquired"] = pd.to_datetime(df["DateAcquired"])
        return df

    def upload_raw(self, path: Path, pid: str, uid: str) -> tuple[int, Any]:
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="pid"\r\n\r\n{pid}\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="uid"\r\n\r\n{uid}\r\n'.encode(),
            (f'--{boundary}\r\nContent-Disposition: form-data; name="orig_file"; filename="{path.name}"\r\n'
             "Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
        return self.post("/api/upload/raw", body=b"".join(parts), content_type=f"multipart/form-data; boundary={boundary}")

    def _names(self, raw_files: list[str]) -> list[tuple[str, str]]:
        return [("raw_files", n if n.lower().endswith(".raw") else n + ".raw") for n in raw_files]

    def flag(self, project: str, pipeline: str, raw_files: list[str]) -> tuple[int, Any]:
        return self.post("/api/flag/create", form=[("project", project), ("pipeline", pipeline),
                                                   *self._names(raw_files)])

    def unflag(self, project: str, pipeline: str, raw_files: list[str]) -> tuple[int, Any]:
        return self.post("/api/flag/delete", form=[("project", project), ("pipeline", pipeline),
                                                   *self._names(raw_files)])

    def rawfile(self, project: str, pipeline: str, raw_files: list[str], action: str) -> tuple[int, Any]:
        return self.post("/api/rawfile", form=[("project", project), ("pipeline", pipeline), ("action", action),
                                               *self._names(raw_files)])


def dashboard_set_rawfile_action(client: OriginalClient, project: str, pipeline: str, stems: list[str],
                                 action: str) -> str:
    """The dashboard's Use/Prevent Downstream buttons: names get ``.raw`` appended, then it reads
    ``response["status"]`` (a KeyError there is what crashed its callback)."""
    _, response = client.rawfile(project, pipeline, [s + ".raw" for s in stems], action)
    return str(response["status"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, dict[str, str]]]:
    root = tmp_path_factory.mktemp("original-client")
    d = Daemon(root)
    d.cli("bootstrap-demo", "--password-stdin", input="demo-password-123\n")
    d.cli("user", "add", "colleague@email.com", "--password-stdin", input="colleague-pass-1\n")
    d.cli("project", "add-member", PROJECT, "colleague@email.com")
    d.cli("project", "add", "My Lab", "--member", DEMO_USER)
    lab = json.loads(d.cli("pipeline", "add", "--project", "my-lab", "--name", "HeLa QC").stdout)
    d.token = "unused"  # start() would create op@lab.org's token otherwise
    d.start()
    tokens = {who: d.cli("token", "create", who).stdout.strip() for who in (DEMO_USER, "colleague@email.com")}
    tokens["lab_uuid"] = lab["uuid"]
    try:
        yield d, tokens
    finally:
        d.stop()
        d.close()


def test_the_python_client_reads_every_answer_into_a_dataframe(demo: tuple[Daemon, dict[str, str]]) -> None:
    d, tokens = demo
    client = OriginalClient(d.base, tokens[DEMO_USER])
    projects = client.get_projects()
    assert {"pk", "name", "description", "slug"} <= set(projects.columns)
    assert set(projects["slug"]) == {PROJECT, "my-lab"}
    pipelines = client.get_pipelines(PROJECT)
    assert list(pipelines["slug"]) == [PIPELINE] and Path(pipelines["path_as_str"][0]).is_absolute()

    qc = client.get_qc_data(PROJECT, PIPELINE, 3)
    assert len(qc) == 3 and qc["RawFile"].is_unique
    assert pd.api.types.is_datetime64_any_dtype(qc["DateAcquired"])
    dated = qc["DateAcquired"].dropna()  # a run without RawTools has no acquisition date: NaT, as null
    assert len(dated) >= 2 and dated.dt.year.between(2015, 2030).all()  # real dates, not 1970
    assert list(qc["Index"]) == [1, 2, 3]
    some = client.get_qc_data(PROJECT, PIPELINE, None, columns=["RawFile", "DateAcquired", "no such column"])
    assert list(some.columns) == ["RawFile", "DateAcquired", "no such column"] and some["no such column"].isna().all()

    _, uploaders = client.post("/api/pipeline-uploaders", json_body={"project": PROJECT, "pipeline": PIPELINE})
    assert list(pd.DataFrame(uploaders)["value"]) == [DEMO_USER]
    _, names = client.post("/api/protein-names", json_body={
        "project": PROJECT, "pipeline": PIPELINE, "data_range": None, "raw_files": None,
        "remove_contaminants": True, "remove_reversed_sequences": True})
    proteins = pd.DataFrame(names)
    assert len(proteins) > 0 and not proteins["protein_names"].str.contains("CON__|REV__").any()
    _, groups = client.post("/api/protein-groups", json_body={
        "project": PROJECT, "pipeline": PIPELINE, "data_range": None, "raw_files": None,
        "protein_names": list(proteins["protein_names"][:2]), "columns": ["Reporter intensity corrected"]})
    frame = pd.DataFrame(groups)
    assert len(frame) >= 2 and "Reporter intensity corrected 1" in frame.columns
    assert set(frame["RawFile"]) <= set(qc["RawFile"])

    # mutations: the answers carry "status", as the dashboard reads them
    stems = list(qc["RawFile"][:2])
    status, answer = client.flag(PROJECT, PIPELINE, stems)
    assert status == 200 and answer["status"] == "success"
    assert client.get_qc_data(PROJECT, PIPELINE, None).set_index("RawFile").loc[stems, "Flagged"].all()
    assert client.unflag(PROJECT, PIPELINE, stems)[1]["status"] == "success"
    assert dashboard_set_rawfile_action(client, PROJECT, PIPELINE, stems, "reject") == "success"
    assert not client.get_qc_data(PROJECT, PIPELINE, None).set_index("RawFile").loc[stems, "Use Downstream"].any()
    assert dashboard_set_rawfile_action(client, PROJECT, PIPELINE, stems, "accept") == "success"

    # the upload with pid + uid, expecting 201 (the demo pipeline is read-only: a lab pipeline)
    status, created = client.upload_raw(DATA / "raw" / "small2.RAW", tokens["lab_uuid"], "ignored-uid")
    assert status == 201, created
    assert created["name"] == "small2.RAW" and created["pipeline"] == tokens["lab_uuid"]


# -- the compatibility decisions (docs/api.md, "Compatibility with the original's clients") -------


def test_anonymous_requests_get_401_with_the_original_detail(demo: tuple[Daemon, dict[str, str]]) -> None:
    d, _ = demo
    status, answer = OriginalClient(d.base, None).post("/api/projects", json_body={})
    # the original answers 403 with this detail; 401 is the status for missing credentials (RFC 9110)
    assert status == 401 and answer == {"detail": "Authentication credentials were not provided."}


def test_protein_names_highest_score_first_and_the_dashboard_order_is_one_sort_away(
        demo: tuple[Daemon, dict[str, str]]) -> None:
    d, tokens = demo
    client = OriginalClient(d.base, tokens[DEMO_USER])
    _, names = client.post("/api/protein-names", json_body={
        "project": PROJECT, "pipeline": PIPELINE, "data_range": None, "raw_files": None,
        "remove_contaminants": False, "remove_reversed_sequences": False})
    scores = pd.DataFrame(names)["Score"]
    assert len(scores) > 2 and scores.is_monotonic_decreasing and scores.iloc[0] > scores.iloc[-1]
    ascending = pd.DataFrame(names).sort_values("Score", kind="stable")  # the original's order
    assert ascending["Score"].is_monotonic_increasing and set(ascending["protein_names"]) == set(names["protein_names"])


def test_a_non_numeric_data_range_is_refused_naming_the_field(demo: tuple[Daemon, dict[str, str]]) -> None:
    d, tokens = demo
    client = OriginalClient(d.base, tokens[DEMO_USER])
    status, answer = client.post("/api/qc-data", json_body={"project": PROJECT, "pipeline": PIPELINE,
                                                             "data_range": "ten"})
    assert status == 400 and answer["detail"].startswith("data_range")
    # what the client itself sends (an int or None) is always accepted
    assert client.post("/api/qc-data", json_body={"project": PROJECT, "pipeline": PIPELINE,
                                                  "data_range": None})[0] == 200


def test_refused_mutations_still_answer_a_status_the_dashboard_can_read(demo: tuple[Daemon, dict[str, str]]) -> None:
    d, tokens = demo
    owner = OriginalClient(d.base, tokens[DEMO_USER])
    stems = list(owner.get_qc_data(PROJECT, PIPELINE, None)["RawFile"])
    before = owner.get_qc_data(PROJECT, PIPELINE, None)[["RawFile", "Flagged", "Use Downstream"]]
    # an unknown file: 404 (the original: a silent no-op), nothing changes
    status, answer = owner.rawfile(PROJECT, PIPELINE, ["no-such-file"], "flag")
    assert status == 404 and answer["status"] == "failed" and "no-such-file" in answer["detail"]
    assert dashboard_set_rawfile_action(owner, PROJECT, PIPELINE, ["no-such-file"], "accept") == "failed"
    # an unknown action: 400 (the original: a no-op)
    status, answer = owner.rawfile(PROJECT, PIPELINE, stems[:1], "archive")
    assert status == 400 and answer["status"] == "failed" and "action" in answer["detail"]
    # a member who does not own the runs: 403, all or nothing (the original skipped them silently)
    colleague = OriginalClient(d.base, tokens["colleague@email.com"])
    assert len(colleague.get_qc_data(PROJECT, PIPELINE, None)) == len(stems)  # reads are project-wide
    status, answer = colleague.flag(PROJECT, PIPELINE, stems)
    assert status == 403 and answer["status"] == "Missing permissions" and "not yours" in answer["detail"]
    assert dashboard_set_rawfile_action(colleague, PROJECT, PIPELINE, stems, "reject") == "Missing permissions"
    after = owner.get_qc_data(PROJECT, PIPELINE, None)[["RawFile", "Flagged", "Use Downstream"]]
    pd.testing.assert_frame_equal(before, after)
