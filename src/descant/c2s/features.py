"""The <stream:features/> a client stream is offered at each stage (RFC 6120 §4.3.2)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.xml import ns

if TYPE_CHECKING:
    from descant.c2s.stream import ClientStream


def build(stream: ClientStream) -> ET.Element:
    from descant.c2s.stream import State

    feats = ET.Element("{%s}features" % ns.STREAM)
    if stream.state is State.AUTHENTICATED:
        ET.SubElement(feats, "{%s}bind" % ns.BIND)
        sess = ET.SubElement(feats, "{%s}session" % ns.SESSION)
        ET.SubElement(sess, "{%s}optional" % ns.SESSION)
        for el in stream.host.stream_features:
            feats.append(el)
        return feats
    transport = stream.transport
    if not transport.secure and transport.can_starttls:
        tls = ET.SubElement(feats, "{%s}starttls" % ns.TLS)
        if stream.tls_required:
            ET.SubElement(tls, "{%s}required" % ns.TLS)
    mechs = stream.mechanisms()
    if mechs:
        m = ET.SubElement(feats, "{%s}mechanisms" % ns.SASL)
        for name in mechs:
            ET.SubElement(m, "{%s}mechanism" % ns.SASL).text = name
        if transport.tls_here:
            # XEP-0440: the channel-binding types this server can verify.
            cb = ET.SubElement(feats, "{%s}sasl-channel-binding" % ns.SASL_CB)
            ET.SubElement(cb, "{%s}channel-binding" % ns.SASL_CB, {"type": "tls-server-end-point"})
        feats.extend(stream.host.pre_auth_features)
    return feats
