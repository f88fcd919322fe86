"""The integrations stay optional: ``import ragkit`` and the CLI load none of their frameworks, and
an integration whose framework is missing says which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = ("mcp", "langchain_core", "llama_index", "haystack")


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


def test_import_ragkit_and_the_cli_load_no_framework() -> None:
    done = run("import sys, ragkit, ragkit.cli.commands as c; c._parser(); "
               f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("module, framework, extra", [
    ("mcp_server", "mcp", "mcp"), ("langchain", "langchain_core", "langchain"),
    ("llamaindex", "llama_index", "llamaindex"), ("haystack", "haystack", "haystack"),
])
def test_a_missing_framework_names_its_extra(module: str, framework: str, extra: str) -> None:
    # sys.modules[name] = None makes `import name` fail, as if the package were not installed
    done = run(f"import sys; sys.modules[{framework!r}] = None\n"
               f"import ragkit.integrations.{module}")
    assert done.returncode != 0
    assert f'pip install "ragkit[{extra}]"' in done.stderr
