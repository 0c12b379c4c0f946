"""The only way out to the network (design-notes D2): SSRF policy, pinned transport, client.

* :class:`NetworkPolicy` — pure rules: schemes, userinfo, ports, which addresses are
  public, the allowlist (requirements.md SSRF-1 … SSRF-9).
* :class:`GuardedTransport` / :class:`GuardedBackend` — resolve once, check every
  address, connect to the checked address; TLS verifies the original host name.
* :func:`guarded_client` — the one ``httpx2.AsyncClient`` factory; :func:`deadline` and
  :func:`mapped_errors` for callers; :func:`vet_url` to check a URL on save.
"""

from tether.net.backend import GuardedBackend, Resolver, system_resolver, vet_url
from tether.net.client import deadline, guarded_client, make_ssl_context, mapped_errors
from tether.net.policy import NetworkPolicy, refusal_reason
from tether.net.transport import GuardedTransport

__all__ = [
    "GuardedBackend",
    "GuardedTransport",
    "NetworkPolicy",
    "Resolver",
    "deadline",
    "guarded_client",
    "make_ssl_context",
    "mapped_errors",
    "refusal_reason",
    "system_resolver",
    "vet_url",
]
