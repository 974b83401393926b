"""MCP server (Model Context Protocol): the consultation as tools for LLM agents, over stdio or streamable HTTP.

Named `mcp_server`, not `mcp`, so that it never shadows the `mcp` SDK it is built on.
"""

from diagnostician.mcp_server.server import INSTRUCTIONS, create_server, run_http, run_stdio

__all__ = ["INSTRUCTIONS", "create_server", "run_http", "run_stdio"]
