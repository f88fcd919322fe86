"""Issue 20, principals and scopes: two principals with disjoint scopes never get, cite, count or see a
document outside their own, on any route, through chat history, query associations or few-shot
examples; a property test over random scopes and queries; the config file and its reload."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")

from fakes import embed
from servekit import TEAM_A, TEAM_B, TOKENS, echo, serving, two_team_index, write_config

from ragkit.errors import ConfigError, FilterError
from ragkit.pipeline.rag import RAG
from ragkit.prompting.builder import PromptBuilder
from ragkit.prompting.examples import Example, ExampleSet
from ragkit.retrieval.association import QueryAssociations
from ragkit.server.app import create_app
from ragkit.server.principals import PrincipalStore, hash_token, narrow
from ragkit.server.scoping import Pipelines, scoped_rag

IDS_A, IDS_B = {d.id for d in TEAM_A}, {d.id for d in TEAM_B}
TEXTS = {d.id: d.text for d in TEAM_A + TEAM_B}
QUESTIONS = ["How do I treat varroa mites?", "What kills bee larvae, foulbrood?", "When does beeswax melt?",
             "queen excluder and honey supers", "swarm in May", "honey extractor frames"]


@pytest.fixture
def index(tmp_path: Path):  # type: ignore[no-untyped-def]
    with two_team_index(tmp_path / "kb.ragkit") as ix:
        yield ix


def leaked(text: str, own: set[str]) -> list[str]:
    """Ids or texts of documents outside ``own`` that appear in ``text``."""
    others = (IDS_A | IDS_B) - own
    return [d for d in others if d in text or TEXTS[d][:40] in text]


def headers(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def test_disjoint_principals_see_only_their_own_documents_on_every_route(index, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = PrincipalStore(write_config(tmp_path / "server.json"))
    app = create_app(RAG(index, generator=echo, k=6, condense="rule"), principals=store)
    history = [{"role": "user", "content": "Tell me about American foulbrood and beeswax"},
               {"role": "assistant", "content": "b-foulbrood says burn infected colonies"},
               {"role": "user", "content": "and what about the second one?"}]
    with serving(app) as root:
        for name, own in (("alice", IDS_A), ("bob", IDS_B)):
            for q in QUESTIONS:
                for asked in (None, {"team": "b" if name == "alice" else "a"}, {"team": {"in": ["a", "b"]}}):
                    r = httpx.post(root + "/search", json={"query": q, "k": 6, "filters": asked}, headers=headers(name))
                    assert r.status_code == 200
                    assert {h["doc_id"] for h in r.json()["hits"]} <= own
                    assert leaked(r.text, own) == []
                p = httpx.post(root + "/prompt", json={"question": q}, headers=headers(name)).json()
                assert {c["doc_id"] for c in p["citations"]} <= own and leaked(json.dumps(p), own) == []
            client = openai.OpenAI(base_url=root + "/v1", api_key=TOKENS[name], max_retries=0)
            for messages in ([{"role": "user", "content": q}] for q in QUESTIONS):
                reply = client.chat.completions.create(model="ragkit", messages=messages,
                                                       extra_body={"filters": {"team": {"in": ["a", "b"]}}})
                assert {s["doc_id"] for s in reply.model_extra["sources"]} <= own
                assert leaked(reply.choices[0].message.content, own) == []
            followed = httpx.post(root + "/prompt", json={"messages": history}, headers=headers(name)).json()
            assert {c["doc_id"] for c in followed["citations"]} <= own
            stream = httpx.post(root + "/v1/chat/completions", json={"messages": history, "stream": True},
                                headers=headers(name))
            sources = [s for line in stream.text.splitlines() if line.startswith("data: {")
                       for s in json.loads(line[6:]).get("sources", [])]
            assert {s["doc_id"] for s in sources} <= own
            assert bool(sources) == (name == "bob")  # the follow-up is about team b's documents
        assert httpx.post(root + "/search", json={"query": "bees"}, headers={"Authorization": "Bearer nope"}
                          ).status_code == 401
        typo = httpx.post(root + "/search", json={"query": "bees", "filters": {"tema": "a"}}, headers=headers("alice"))
    assert typo.status_code == 400 and "'tema'" in typo.text and "team" not in typo.text  # no field list


def test_groups_match_the_acl_field(index, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = PrincipalStore(write_config(tmp_path / "server.json"))
    with serving(create_app(RAG(index, generator=echo, k=6), principals=store)) as root:
        hits = httpx.post(root + "/search", json={"query": "queen swarm honey bees", "k": 6},
                          headers=headers("carol")).json()["hits"]
    assert {h["doc_id"] for h in hits} == {"a-swarm", "b-queen"}  # acl lists holding "blue"


def test_associations_and_few_shot_examples_do_not_leak_across_scopes(index, tmp_path) -> None:  # type: ignore[no-untyped-def]
    question = "What kills bee larvae, foulbrood?"
    index.save_query_associations(QueryAssociations.from_labels([question], embed(question)[None, :],
                                                                [["b-foulbrood", "b-wax"]]))
    examples = ExampleSet([Example("team a example question", "SECRET-A answer", {"team": "a"}),
                           Example("team b example question", "SECRET-B answer", {"team": "b"}),
                           Example("untagged example", "UNTAGGED answer")])
    builder = PromptBuilder("fewshot", examples=examples, example_strategy="similar", num_examples=3)
    rag = RAG(index, builder, generator=echo, k=6, retriever_settings={"associations": True,
                                                                      "association_weight": 100.0})
    store = PrincipalStore(write_config(tmp_path / "server.json"))
    with serving(create_app(rag, principals=store)) as root:
        alice = httpx.post(root + "/prompt", json={"question": question}, headers=headers("alice")).json()
        bob = httpx.post(root + "/search", json={"query": question}, headers=headers("bob")).json()
        rag.builder = PromptBuilder("fewshot", examples=ExampleSet([Example("new a example", "NEWER-A answer",
                                                                            {"team": "a"})]), example_strategy="fixed")
        again = httpx.post(root + "/prompt", json={"question": question}, headers=headers("alice")).json()
    assert {c["doc_id"] for c in alice["citations"]} <= IDS_A and leaked(alice["text"], IDS_A) == []
    assert "SECRET-A" in alice["text"] and "SECRET-B" not in alice["text"] and "UNTAGGED" not in alice["text"]
    assert bob["hits"][0]["doc_id"] == "b-foulbrood" and bob["hits"][0]["association_score"]  # lifted, in scope
    assert "NEWER-A" in again["text"] and "SECRET-A" not in again["text"]  # a builder swapped in later is used


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(teams=st.sets(st.sampled_from(["a", "b", "c"]), min_size=1), groups=st.none() | st.sets(
    st.sampled_from(["red", "green", "blue"]), min_size=1), words=st.lists(st.sampled_from(
        ["varroa", "mites", "honey", "queen", "larvae", "wax", "swarm", "frames", "bees", "colonies", "burn", "May"]), min_size=1, max_size=5),
    asked=st.none() | st.sets(st.sampled_from(["a", "b"]), min_size=1), k=st.integers(1, 6))
def test_property_no_hit_or_citation_is_ever_outside_the_scope(index, teams, groups, words, asked, k) -> None:  # type: ignore[no-untyped-def]
    scope = {"team": {"in": sorted(teams)}}
    if groups is not None:
        scope["acl"] = {"in": sorted(groups)}
    allowed = {d.id for d in TEAM_A + TEAM_B if d.metadata["team"] in teams
               and (groups is None or set(d.metadata["acl"]) & groups)
               and (asked is None or d.metadata["team"] in asked)}
    rag = RAG(index, generator=echo, k=k)
    scoped = scoped_rag(Pipelines(rag), None, narrow(scope, {"team": {"in": sorted(asked)}} if asked else None))
    query = " ".join(words)
    hits = scoped.retrieve(query)
    assert {h.doc_id for h in hits} <= allowed and len(hits) <= len(allowed)
    prepared = scoped.prepare_chat([{"role": "user", "content": "swarm honey"}, {"role": "assistant", "content": "ok"},
                                    {"role": "user", "content": query}])
    assert {c.doc_id for c in prepared.prompt.citations.values()} <= allowed
    assert leaked(prepared.prompt.text, allowed) == []


def test_narrow_only_ever_narrows() -> None:
    assert narrow({"team": "a"}, {"team": "b"}) == {"team": {"in": []}}
    assert narrow({"team": {"in": ["a", "b"]}}, {"team": "b", "page": {"gte": 2}}) == {
        "team": {"in": ["b"]}, "page": {"gte": 2}}
    assert narrow({"page": {"gte": 2, "lt": 9}}, {"page": {"gte": 1, "lt": 20}}) == {"page": {"gte": 2, "lt": 9}}
    assert narrow({"tag": {"nin": ["x"]}}, {"tag": {"nin": ["y"]}}) == {"tag": {"nin": ["x", "y"]}}
    assert narrow(None, None) is None
    with pytest.raises(FilterError, match="cannot be combined"):
        narrow({"source": {"glob": "a/*"}}, {"source": {"glob": "*"}})
    with pytest.raises(FilterError, match="unknown filter operator"):
        narrow({"team": "a"}, {"team": {"or": ["b"]}})


def test_the_config_file_reloads_on_change_and_keeps_the_old_table_when_broken(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_config(tmp_path / "server.json")
    store = PrincipalStore(path)
    assert store.authenticate(TOKENS["alice"]).name == "alice" and store.authenticate("alice") is None
    assert TOKENS["alice"] not in path.read_text()  # only digests at rest
    data = json.loads(path.read_text())
    data["principals"][0]["token_sha256"] = hash_token("rotated")
    path.write_text(json.dumps(data))
    os.utime(path, (time.time() + 5, time.time() + 5))
    store._checked = 0.0  # as if a second had passed
    assert store.authenticate("rotated").name == "alice" and store.authenticate(TOKENS["alice"]) is None
    path.write_text("{not json")
    assert store.reload() is False and store.authenticate("rotated").name == "alice"

    toml = tmp_path / "server.toml"
    toml.write_text(f'[[principals]]\nname = "t"\ntoken_sha256 = "{hash_token("x")}"\n'
                    'filters = {{ team = {{ in = ["a"] }} }}\nrequests_per_minute = 5\n'.replace("{{", "{").replace("}}", "}"))
    principal = PrincipalStore(toml).authenticate("x")
    assert principal.scope() == {"team": {"in": ["a"]}} and principal.requests_per_minute == 5


@pytest.mark.parametrize("entry, message", [
    ({"name": "x", "token_sha256": "0" * 64}, "needs 'filters' or 'groups'"),
    ({"name": "x", "token_sha256": "abc", "filters": {}}, "64 hex digits"),
    ({"name": "x", "token_sha256": "0" * 64, "filters": {"team": {"like": "a"}}}, "bad 'filters'"),
    ({"name": "x", "token_sha256": "0" * 64, "groups": "blue"}, "list of strings"),
    ({"name": "x", "token_sha256": "0" * 64, "filters": {}, "rpm": 3}, "unknown keys"),
])
def test_a_bad_config_file_names_the_principal_and_the_field(tmp_path, entry, message) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "server.json"
    path.write_text(json.dumps({"principals": [entry]}))
    with pytest.raises(ConfigError, match=message) as caught:
        PrincipalStore(path)
    assert str(path) in str(caught.value)
