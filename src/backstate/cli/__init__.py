"""The ``backstate`` command: ``serve`` and ``dev`` run a server; ``machines``,
``machine-versions``, ``migrations``, ``instances``, ``logs``, ``orgs``, ``keys``,
``tokens``, ``identity-providers`` and ``token-providers`` mirror State Backed's smply
CLI over ``backstate.client``, with Python machine files. See docs/cli.md.

Modules: ``_app`` (parser, shared options, client, errors and exit status),
``_output`` (tables, JSON, progress), ``_args`` (option parsing), ``_files`` (machine
and migration files checked before upload), and one ``_commands_*`` per command family.
"""

from ._app import main

__all__ = ["main"]
