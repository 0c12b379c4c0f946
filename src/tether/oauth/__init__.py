"""Pure OAuth 2.1 client protocol logic for MCP authorization (design-notes D2).

No I/O, no clock, no randomness: time and random values are arguments, and the hub sends
what these functions build through ``net/``. Imports only the standard library, pydantic
and :mod:`tether.errors`.

Modules, one per concept:

- :mod:`~tether.oauth.challenge` — ``WWW-Authenticate`` parsing (RFC 7235, RFC 6750 §3,
  RFC 9728 §5.1).
- :mod:`~tether.oauth.discovery` — metadata URL orders and probe drivers (RFC 9728 §3,
  RFC 8414 §3, OIDC Discovery).
- :mod:`~tether.oauth.models` — protected resource and authorization server metadata
  (RFC 9728 §2, RFC 8414 §2) and their validation.
- :mod:`~tether.oauth.resource` — the canonical resource URI (RFC 8707 §2).
- :mod:`~tether.oauth.pkce` — S256 PKCE (RFC 7636 §4).
- :mod:`~tether.oauth.registration` — registration choice, dynamic registration
  (RFC 7591) and the client ID metadata document.
- :mod:`~tether.oauth.client_auth` — token endpoint client authentication (RFC 6749 §2.3).
- :mod:`~tether.oauth.params` — admin extra parameters and the protected keys.
- :mod:`~tether.oauth.authorize` — scope selection and the authorization URL
  (RFC 6749 §4.1.1, RFC 8707 §2.1).
- :mod:`~tether.oauth.callback` — the authorization response, ``iss`` (RFC 9207 §2.4).
- :mod:`~tether.oauth.tokens` — token requests and responses, refresh (RFC 6749 §4–6).
- :mod:`~tether.oauth.revocation` — token revocation (RFC 7009).
"""
