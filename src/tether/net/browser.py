"""Headless completion of an authorization request, for servers that approve at once.

Used by ``tether connect --follow-redirects``, ``tether probe`` and the test suite: it
plays the user agent, following the authorization server's redirects (with a cookie jar
of its own, as a browser would, kept for this one walk and then dropped) until one points
at Tether's redirect URI, and returns that URI's query parameters without requesting it.
Every hop goes through the guarded transport, whose client keeps no cookies.
An authorization server that shows a login or consent page cannot be completed this way;
the error says so.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import httpx2

from tether.errors import RemoteError, UsageError
from tether.net.backend import Resolver, system_resolver
from tether.net.client import deadline, guarded_client, mapped_errors
from tether.net.policy import NetworkPolicy
from tether.oauth.callback import parse_callback_query

__all__ = ["follow_authorization"]


def _same_endpoint(location: str, redirect_uri: str) -> bool:
    a, b = urlsplit(location), urlsplit(redirect_uri)
    return (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)


async def follow_authorization(
    authorization_url: str,
    redirect_uri: str,
    policy: NetworkPolicy,
    *,
    seconds: float = 30.0,
    max_hops: int = 12,
    ca_bundle: str | None = None,
    resolver: Resolver = system_resolver,
) -> dict[str, str | list[str]]:
    """Follow an authorization request's redirects to the callback.

    Args:
        authorization_url: From the start of a connect.
        redirect_uri: Tether's callback URL; the hop that reaches it ends the walk.
        policy: SSRF policy for every hop.
        seconds: Overall deadline.
        max_hops: Redirects to follow at most.
        ca_bundle: CA bundle for a server with a private CA.
        resolver: Name resolution (tests).

    Returns:
        The callback's query parameters (``code``, ``state``, ``iss`` or ``error``); a
        repeated parameter keeps all its values, for the RFC 6749 §3.1 check.

    Raises:
        RemoteError: The AS answered with a page instead of a redirect (it wants a
            person), or too many hops.
        BlockedDestination / NetworkError: A hop was refused or failed.
    """
    if _same_endpoint(authorization_url, redirect_uri):
        raise UsageError("the authorization URL is the redirect URI itself")
    url = authorization_url
    async with guarded_client(
        policy,
        timeout=seconds,
        follow_redirects=False,
        ca_bundle=ca_bundle,
        resolver=resolver,
    ) as client:
        with mapped_errors(step="authorize"):
            async with deadline(seconds, step="authorize"):
                jar = httpx2.Cookies()  # this walk's only: nothing crosses subjects
                for _ in range(max_hops):
                    request = client.build_request("GET", url)
                    jar.set_cookie_header(request)
                    response = await client.send(request)
                    await response.aread()
                    jar.extract_cookies(response)
                    location = response.headers.get("location")
                    if not response.is_redirect or location is None:
                        raise _needs_person(url, response)
                    url = urljoin(url, location)
                    if _same_endpoint(url, redirect_uri):
                        return parse_callback_query(urlsplit(url).query)
    raise RemoteError(
        f"no redirect to the callback after {max_hops} hops", step="authorize"
    )


def _needs_person(url: str, response: httpx2.Response) -> RemoteError:
    host = urlsplit(url).hostname
    return RemoteError(
        f"{host} answered HTTP {response.status_code} instead of redirecting back; "
        "it needs a person to log in or consent",
        step="authorize",
        hint="open the authorization URL in a browser instead",
        details={"status": response.status_code},
    )
