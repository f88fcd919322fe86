"""``augment`` on the fake embedder: where the context goes among the caller's messages."""

from __future__ import annotations

from ragkit import Document, augment


def test_augment_keeps_system_messages_first(fake_index) -> None:  # type: ignore[no-untyped-def]
    fake_index.add([Document("afb", "American foulbrood is caused by Paenibacillus larvae spores."),
                    Document("swarm", "Colonies swarm in late spring when the hive is crowded.")])
    messages = [
        {"role": "system", "content": "You are a beekeeping assistant."},
        {"role": "user", "content": "What causes American foulbrood?"},
        {"role": "assistant", "content": "A bacterium [1]."},
        {"role": "user", "content": "Which bacterium causes American foulbrood?"},
    ]
    augmented = augment(messages, fake_index, k=1)
    roles = [m["role"] for m in augmented]
    assert roles == ["system", "system", "user", "assistant", "user"]  # was: a system turn between turns
    assert augmented[0] == messages[0] and augmented[2:] == messages[1:]
    assert "Paenibacillus larvae" in augmented[1]["content"]
    assert [c.doc_id for c in augmented.prompt.cited("Spores [1].")] == ["afb"]
