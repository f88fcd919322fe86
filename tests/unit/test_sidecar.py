"""Issue 20, documents get their ACL metadata from the sync without front matter: a ``.ragkitmeta.toml``
sidecar gives every file at or below its folder its keys (nearest wins, front matter wins over it), is
itself never indexed, and a change to it re-syncs its files' metadata from the embedding cache. The
server then scopes by it: two principals see only their own folder (fake embedder, real HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fakes import open_fake_index

from ragkit.ingest.sidecar import METADATA_FILE
from ragkit.server.principals import PrincipalStore, hash_token

TOKENS = {"ann": "ann-token", "ben": "ben-token"}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    write(root / METADATA_FILE, 'site = "bees"\nacl = ["nobody"]\n')
    write(root / "team-a" / METADATA_FILE, 'acl = ["team-a"]\nteam = "a"\n')
    write(root / "team-a" / "varroa.md", "# Varroa\n\nTreat varroa mites with oxalic acid in winter.\n")
    write(root / "team-a" / "deep" / "swarm.txt", "Catch a swarm of bees in May with a box.\n")
    write(root / "team-a" / "public.md", "---\nacl: [team-a, team-b]\n---\n# Honey\n\nSpin honey frames.\n")
    write(root / "team-b" / METADATA_FILE, 'acl = ["team-b"]\nteam = "b"\n')
    write(root / "team-b" / "foulbrood.md", "# Foulbrood\n\nAmerican foulbrood kills bee larvae; burn frames.\n")
    write(root / "team-b" / "wax.md", "# Wax\n\nBeeswax melts at 62 degrees; render old comb.\n")
    write(root / "root.md", "# Root\n\nNotes for nobody in particular about bees.\n")
    return root


def metadata(index) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {d.id: d.metadata for d in index.documents()}


def test_sidecars_give_their_folders_metadata_nearest_wins_front_matter_wins(docs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        report = index.sync(docs)
        meta = metadata(index)
    assert sorted(meta) == ["root.md", "team-a/deep/swarm.txt", "team-a/public.md", "team-a/varroa.md",
                            "team-b/foulbrood.md", "team-b/wax.md"]  # no sidecar was indexed
    skipped = {s.path: s.reason for s in report.skipped}
    assert skipped == {METADATA_FILE: "metadata file", f"team-a/{METADATA_FILE}": "metadata file",
                       f"team-b/{METADATA_FILE}": "metadata file"}
    assert meta["team-a/deep/swarm.txt"]["acl"] == ["team-a"] and meta["team-a/deep/swarm.txt"]["site"] == "bees"
    assert meta["team-b/wax.md"]["acl"] == ["team-b"] and meta["team-b/wax.md"]["team"] == "b"
    assert meta["root.md"]["acl"] == ["nobody"] and "team" not in meta["root.md"]
    assert meta["team-a/public.md"]["acl"] == ["team-a", "team-b"] and meta["team-a/public.md"]["team"] == "a"
    assert meta["team-a/varroa.md"]["source"] == "team-a/varroa.md"  # the loader's own fields win


def test_a_changed_sidecar_resyncs_its_files_metadata_from_the_embedding_cache(docs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        index.sync(docs)
        assert index.sync(docs).summary().startswith("0 added, 0 updated")  # unchanged: nothing read again
        write(docs / "team-b" / METADATA_FILE, 'acl = ["team-b", "auditors"]\nteam = "b"\n')
        changed = index.sync(docs)
        assert sorted(changed.updated) == ["team-b/foulbrood.md", "team-b/wax.md"]
        assert changed.chunks_embedded == 0 and not changed.added and not changed.removed
        assert metadata(index)["team-b/wax.md"]["acl"] == ["team-b", "auditors"]
        (docs / "team-b" / METADATA_FILE).unlink()  # removed: back to the root sidecar's
        gone = index.sync(docs)
        assert sorted(gone.updated) == ["team-b/foulbrood.md", "team-b/wax.md"] and gone.chunks_embedded == 0
        meta = metadata(index)
        assert meta["team-b/wax.md"]["acl"] == ["nobody"] and "team" not in meta["team-b/wax.md"]
        assert index.sync(docs).updated == ()


def test_a_bad_sidecar_fails_its_files_which_keep_their_indexed_version(docs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        index.sync(docs)
        for bad, why in (('acl = ["team-b"\n', "does not parse as TOML"), ('doc_id = "x"\n', "the index's own field"),
                         ('acl = { a = 1 }\n', "metadata values are strings, numbers")):
            write(docs / "team-b" / METADATA_FILE, bad)
            report = index.sync(docs)
            failed = {f.path: f.reason for f in report.failed}
            assert sorted(failed) == ["team-b/foulbrood.md", "team-b/wax.md"], bad
            assert all(f"team-b/{METADATA_FILE}" in r and why in r for r in failed.values()), failed
            assert not report.removed and metadata(index)["team-b/wax.md"]["acl"] == ["team-b"]


def test_two_principals_search_only_their_own_folder(docs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("fastapi")
    from servekit import serving

    from ragkit.pipeline.rag import RAG
    from ragkit.server.app import create_app

    config = tmp_path / "server.json"
    config.write_text(json.dumps({"principals": [
        {"name": name, "token_sha256": hash_token(TOKENS[name]), "groups": [group]}
        for name, group in (("ann", "team-a"), ("ben", "team-b"))]}), encoding="utf-8")
    own = {"ann": {"team-a/varroa.md", "team-a/deep/swarm.txt", "team-a/public.md"},
           "ben": {"team-b/foulbrood.md", "team-b/wax.md", "team-a/public.md"}}  # front matter shares one
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        index.sync(docs)
        app = create_app(RAG(index, generator=lambda messages, **_: "ok", k=10), principals=PrincipalStore(config))
        with serving(app) as root:
            for name, mine in own.items():
                seen: set[str] = set()
                for query in ("varroa mites", "foulbrood larvae", "beeswax comb", "swarm bees", "honey", "notes"):
                    r = httpx.post(root + "/search", json={"query": query, "k": 10},
                                   headers={"Authorization": f"Bearer {TOKENS[name]}"})
                    assert r.status_code == 200, r.text
                    seen |= {h["doc_id"] for h in r.json()["hits"]}
                assert seen == mine, name
