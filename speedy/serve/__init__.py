"""`speedy serve`: optimized artifacts behind an HTTP API and a web page, under a bounded queue.

Starlette on uvicorn: a small, maintained ASGI stack with streaming responses, no more
framework than the eight routes need. Sessions load once and are shared by the worker threads.
In front of the routes: the Host and API-key policy (`guard`), optional CORS, a cap on open
connections, and timeouts for a request's head and body (`connections`) and for a client that
stops reading.
"""
