"""Verifies the DKIM signature of one message with dkimpy, unchanged.

The message comes on stdin, as received; the DNS is the JSON object in the environment
variable DKIM_DNS ({"<selector>._domainkey.<domain>": "<TXT value>"}), given to dkimpy as its
`dnsfunc`, so that no real DNS is asked. Prints `pass d=<domain> s=<selector> a=<algorithm>`
and exits 0, or prints why and exits 1.
"""
import json
import os
import sys

import dkim

records = json.loads(os.environ["DKIM_DNS"])
asked = []


def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    asked.append(name)
    value = records.get(name.rstrip("."))
    return value.encode() if value is not None else None


message = sys.stdin.buffer.read()
verifier = dkim.DKIM(message)
try:
    ok = verifier.verify(dnsfunc=dnsfunc)
except dkim.DKIMException as e:
    print(f"error: {e} (asked {asked})")
    sys.exit(1)
if not ok:
    print(f"fail (asked {asked})")
    sys.exit(1)
print(f"pass d={verifier.domain.decode()} s={verifier.selector.decode()} a={verifier.signature_fields.get(b'a', b'').decode()}")
