"""`minillm serve`: an Ollama- and OpenAI-compatible HTTP server for a checkpoint.

server.py  the app, the HTTP handler core, flags     engine.py  the batching scheduler
ollama.py  Ollama routes (/api/...)                  openai.py  OpenAI routes (/v1/...)
parse.py   request bodies, options, messages, the <think> split
"""

from minillm.serve.server import App, Server, build_parser, main, serve_app

__all__ = ["App", "Server", "build_parser", "main", "serve_app"]
