"""Tether's web service and the router apps mount to embed it (design-notes D4).

``create_app(settings)`` builds the service; :func:`embedded_app` is what a host
FastAPI/Starlette app mounts to get the OAuth callback, the client metadata document and
the "connect your account" flow for its own signed-in users.
"""

from __future__ import annotations

from tether.web.app import create_app
from tether.web.embed import embedded_app

__all__ = ["create_app", "embedded_app"]
