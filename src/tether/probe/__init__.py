"""``tether probe``: the headless connect diagnostic, an application of the public API.

Like the CLI and the web service, the probe sits above the library: it imports only
``tether`` (the curated ``__all__``) and ``tether.errors`` (import-linter enforces
it). It runs the whole connect flow against one MCP server on a throw-away in-memory
Tether and reports every step with the HTTP requests it made (issue 4; the request
list of issue 9). The library never reads the environment; :mod:`tether.cli.probe`
turns options (and the conformance suite's variables) into :class:`ProbeOptions`.
"""

from tether.probe.conformance import conformance_options
from tether.probe.flow import probe
from tether.probe.options import Authorizer, ProbeOptions, check_options
from tether.probe.render import render_report
from tether.probe.report import ProbeReport, ProbeStep, Request, mask_url

__all__ = [
    "Authorizer",
    "ProbeOptions",
    "ProbeReport",
    "ProbeStep",
    "Request",
    "check_options",
    "conformance_options",
    "mask_url",
    "probe",
    "render_report",
]
