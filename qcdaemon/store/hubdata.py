"""What a hub pulls beside a run's fields and values (issue 17): its per-run data (protein groups,
PSMs, chromatograms) page by page, deletions (tombstones with a change number) and the hub's own
judgement kept apart from the origin's.

Per-run data is read and written only through the store's public methods (``protein_names``,
``protein_rows``, ``put_protein_groups``, ``psms``, ``put_psms``, ``chromatograms``,
``put_chromatograms``), never by SQL on their tables, so it follows however they are stored.

The data's *fingerprint* is a digest of the run's stages (name, state, end time, attempts): every
write of per-run data happens while its stage runs, and the stage's end changes the fingerprint
after the last write, so a hub holding a run's data with the current fingerprint holds all of it.
A run without stages (a demo run, a run pulled by a hub) has the fingerprint the hub stored, or
``""``: its data is fetched at each of its changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pyarrow as pa

from qcdaemon.core.clock import utcnow
from qcdaemon.store.proteins import ProteinQueries
from qcdaemon.store.runs import RunQueries
from qcdaemon.tools.maxquant_proteins import ProteinGroup

PARTS = ("protein_groups", "psms", "chromatograms")
MAX_PAGE = {"protein_groups": 1000, "psms": 5000, "chromatograms": 20}
_NAMES_CHUNK = 1000
_JUDGED = ("flagged", "use_downstream")


def enc(v: Any) -> Any:
    """A float for JSON, non-finite ones as their names (JSON has no NaN; a hub must store NaN, not null)."""
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


def dec(v: Any) -> Any:
    return float(v) if v in ("NaN", "Infinity", "-Infinity") else v


class HubDataQueries(RunQueries, ProteinQueries):
    # -- the instrument's side -----------------------------------------------------------------

    def delete_run(self, run_id: int) -> None:
        """Delete the run (``RunQueries.delete_run``) and leave its tombstone in the change feed,
        in one transaction."""
        with self.transaction():
            r = self.row("SELECT pl.project_id FROM runs r JOIN pipelines pl ON pl.id = r.pipeline_id"
                         " WHERE r.id = ?", [run_id])
            if r is not None:
                self.execute("INSERT INTO deleted_runs VALUES (nextval('seq_changes'), ?, ?, ?)",
                             [f"rf{int(run_id)}", r["project_id"], utcnow()])
            super().delete_run(run_id)
            self.execute("DELETE FROM hub_runs WHERE run_id = ?", [run_id])

    def deletions_since(self, since: int, limit: int, project_ids: Sequence[int] | None) -> list[dict[str, Any]]:
        params: list[Any] = [int(since)]
        scope = ""
        if project_ids is not None:
            scope = f" AND project_id IN ({', '.join('?' * len(project_ids))})" if project_ids else " AND false"
            params.extend(int(p) for p in project_ids)
        return self.rows(f"SELECT run_key, change_seq AS change FROM deleted_runs WHERE change_seq > ?{scope}"
                         f" ORDER BY change_seq LIMIT {int(limit) + 1}", params)

    def data_fingerprints(self, run_ids: Sequence[int]) -> dict[int, str]:
        """Per run, the fingerprint of its per-run data (see the module's docstring)."""
        if not run_ids:
            return {}
        ids = [int(i) for i in run_ids]
        rows = self.rows(
            "SELECT i.id, coalesce(s.fp, h.data_applied, '') AS fp FROM (SELECT unnest(?::INTEGER[]) AS id) i"
            " LEFT JOIN (SELECT run_id, md5(string_agg(stage || ':' || state || ':' || coalesce(CAST(ended_at AS VARCHAR),"
            " '') || ':' || CAST(attempts AS VARCHAR), ',' ORDER BY stage)) AS fp FROM stages"
            " WHERE run_id IN (SELECT unnest(?::INTEGER[])) GROUP BY run_id) s ON s.run_id = i.id"
            " LEFT JOIN hub_runs h ON h.run_id = i.id",
            [ids, ids],
        )
        return {int(r["id"]): str(r["fp"]) for r in rows}

    def run_project(self, run_id: int) -> int | None:
        r = self.row("SELECT pl.project_id FROM runs r JOIN pipelines pl ON pl.id = r.pipeline_id WHERE r.id = ?",
                     [int(run_id)])
        return None if r is None else int(r["project_id"])

    def run_data_page(self, run_id: int, part: str, offset: int, limit: int) -> dict[str, Any]:
        """One page of a run's ``part`` (one of ``PARTS``) from ``offset``: at most ``limit`` protein
        groups (in their stored order), PSM rows (in scan order) or chromatograms (by name)."""
        limit = min(max(int(limit), 1), MAX_PAGE[part])
        offset = max(int(offset), 0)
        fp = self.data_fingerprints([run_id]).get(run_id, "")
        rows: Any
        if part == "protein_groups":
            rows, total = self._group_page(run_id, offset, limit)
        elif part == "psms":
            table = self.psms(run_id)
            total = table.num_rows
            page = table.slice(offset, limit).to_pydict()
            rows = {k: [enc(v) for v in col] for k, col in page.items()}
        else:
            chroms = self.chromatograms(run_id)
            names = sorted(chroms)[offset:offset + limit]
            total = len(chroms)
            rows = {n: {k: [enc(v) for v in chroms[n][k]] for k in ("rt", "intensity")} for n in names}
        nxt = min(offset + limit, total)
        return {"part": part, "data": fp, "rows": rows, "next": nxt, "more": nxt < total}

    def _group_page(self, run_id: int, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Groups ``offset``.. ``offset + limit`` in stored order: the run's protein names are put in
        that order (read a chunk of names at a time, so only names and positions are held), then
        the page's groups are read by name."""
        names = sorted({str(r["majority_ids"]) for r in self.protein_names([run_id], False, False)})
        first: dict[str, int] = {}
        for i in range(0, len(names), _NAMES_CHUNK):
            for r in self.protein_rows([run_id], names[i:i + _NAMES_CHUNK]):
                first[r["majority_ids"]] = min(first.get(r["majority_ids"], r["idx"]), int(r["idx"]))
        ordered = sorted(first, key=first.__getitem__)
        groups = self.protein_rows([run_id], ordered[offset:offset + limit]) if offset < len(ordered) else []
        out = [{"idx": int(g["idx"]), "majority_ids": g["majority_ids"], "fasta_headers": g["fasta_headers"],
                "score": enc(g["score"]), "intensity": enc(g["intensity"]), "contaminant": bool(g["contaminant"]),
                "reverse": bool(g["reverse"]), "only_by_site": bool(g["only_by_site"]),
                "reporter": [enc(v) for v in g["reporter"] or []], "extra": g["extra"]} for g in groups]
        return out, len(ordered)

    # -- the hub's side ------------------------------------------------------------------------

    def hub_pending(self, source: str) -> list[dict[str, Any]]:
        """The source's pulled runs whose per-run data is to be fetched (hub run id, key there)."""
        return self.rows("SELECT r.id, r.origin_key FROM hub_runs h JOIN runs r ON r.id = h.run_id"
                         " WHERE h.data_pending AND r.origin = ? ORDER BY r.id", [source])

    def hub_data_applied(self, run_id: int, fingerprint: str) -> None:
        """The run's data is held as of ``fingerprint``; the run's next change number tells a hub
        pulling from this one (its fingerprint is this one, having no stages) that it is complete."""
        with self.transaction():
            self.execute("UPDATE hub_runs SET data_applied = ?, data_pending = false WHERE run_id = ?",
                         [fingerprint, int(run_id)])
            self.execute("UPDATE runs SET change_seq = nextval('seq_changes') WHERE id = ?", [int(run_id)])

    def hub_put_groups(self, run_id: int, rows: Sequence[Mapping[str, Any]]) -> int:
        """Add a page of pulled groups, each at its origin's position + 1 (the run's groups were
        cleared with ``put_protein_groups(run, [])`` first): the stored order is the origin's."""
        ordered = sorted(rows, key=lambda g: int(g["idx"]))
        start = 0
        for k in range(1, len(ordered) + 1):  # runs of consecutive positions, one batch each
            if k == len(ordered) or int(ordered[k]["idx"]) != int(ordered[k - 1]["idx"]) + 1:
                batch = [_group(g) for g in ordered[start:k]]
                self.put_protein_groups(run_id, batch, first_idx=int(ordered[start]["idx"]) + 1)
                start = k
        return len(ordered)

    def hub_put_psms(self, run_id: int, pages: Sequence[Mapping[str, Sequence[Any]]]) -> int:
        schema = self.psms(-1).schema
        cols = {f.name: [dec(v) for p in pages for v in p.get(f.name, [])] for f in schema}
        return self.put_psms(run_id, pa.Table.from_pydict(cols, schema=schema))

    def hub_put_chromatograms(self, run_id: int, chroms: Mapping[str, Mapping[str, Sequence[Any]]]) -> None:
        self.put_chromatograms(run_id, {n: list(zip(map(dec, c["rt"]), map(dec, c["intensity"]), strict=True))
                                        for n, c in chroms.items()})

    def _hub_track(self, run_id: int, r: Mapping[str, Any], new: bool) -> dict[str, Any]:
        """Record what was pulled for the hub run: the data fingerprint wanted, the origin's judgement;
        returns the judgement fields to store (the hub's own where it gave one, see docs/scale-out.md)."""
        h = self.row("SELECT * FROM hub_runs WHERE run_id = ?", [run_id])
        cur = None if new else self.row("SELECT flagged, use_downstream FROM runs WHERE id = ?", [run_id])
        origin = {"flagged": bool(r.get("flagged")), "use_downstream": r.get("use_downstream")}
        own: dict[str, Any] = {}
        for f in _JUDGED:
            mine = None if h is None else h[f"hub_{f}"]
            if cur is not None and h is not None and cur[f] != (mine if mine is not None else h[f"origin_{f}"]):
                mine = cur[f]  # changed on the hub since the last pull: the hub's judgement from now on
            own[f] = mine
        wanted = r.get("data")
        pending = wanted is not None and (wanted == "" or h is None or wanted != h["data_applied"])
        self.execute(
            "INSERT INTO hub_runs (run_id, data_wanted, data_applied, data_pending, origin_flagged,"
            " origin_use_downstream, hub_flagged, hub_use_downstream) VALUES (?, ?, NULL, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id) DO UPDATE SET data_wanted = excluded.data_wanted,"
            " data_pending = hub_runs.data_pending OR excluded.data_pending,"
            " origin_flagged = excluded.origin_flagged, origin_use_downstream = excluded.origin_use_downstream,"
            " hub_flagged = excluded.hub_flagged, hub_use_downstream = excluded.hub_use_downstream",
            [run_id, wanted, pending, origin["flagged"], origin["use_downstream"], own["flagged"],
             own["use_downstream"]],
        )
        return {f: origin[f] if own[f] is None else own[f] for f in _JUDGED}


def _group(g: Mapping[str, Any]) -> ProteinGroup:
    return ProteinGroup(
        majority_protein_ids=str(g["majority_ids"]),
        fasta_headers=cast(str, g.get("fasta_headers")),  # NULL stays NULL (the answers tell null from "")
        score=dec(g.get("score")), intensity=dec(g.get("intensity")), contaminant=bool(g["contaminant"]),
        reverse=bool(g["reverse"]), only_by_site=bool(g["only_by_site"]),
        reporter_corrected=tuple(dec(v) for v in g.get("reporter") or ()), extra=dict(g.get("extra") or {}),
    )
