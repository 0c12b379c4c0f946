"""``tether demo``: the service, a demo MCP server and its authorization server (issue 10 item 10).

An application beside the CLI and the web service: :mod:`tether.demo.stack` starts
everything on loopback, :mod:`tether.demo.walkthrough` is the scripted ``--headless``
walkthrough, and :func:`tether.demo.run.run_demo` ties them together for the command.
"""
