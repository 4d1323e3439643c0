"""Which network addresses are public: what the server may reach on behalf of code or
input it does not trust (JWKS URLs, sandboxed services' egress)."""

from __future__ import annotations

import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def public(address: Address) -> bool:
    """Whether ``address`` is one the whole internet can reach: not loopback, private,
    link-local (169.254.169.254), shared, multicast or reserved; an IPv6 address that
    carries an IPv4 one is judged by that one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return public(embedded)
    return address.is_global and not address.is_multicast
