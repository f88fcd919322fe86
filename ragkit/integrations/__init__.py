"""Integrations: ragkit's index served to other tools, each behind its own extra.

=====================================  ================================  ===========================
module                                 what                              install
=====================================  ================================  ===========================
``ragkit.integrations.mcp_server``     MCP server (``ragkit mcp``)       ``pip install "ragkit[mcp]"``
``ragkit.integrations.langchain``      LangChain ``BaseRetriever``       ``pip install "ragkit[langchain]"``
``ragkit.integrations.llamaindex``     LlamaIndex ``BaseRetriever``      ``pip install "ragkit[llamaindex]"``
``ragkit.integrations.haystack``       Haystack 2 retriever component    ``pip install "ragkit[haystack]"``
=====================================  ================================  ===========================

Nothing here is imported by ``import ragkit``; each module imports its framework when it is imported,
and says which extra to install when the framework is missing. :mod:`ragkit.integrations.records`
holds what they share (hits as flat records, search options, passages by id).
"""
