"""COSE speed: Sign1 sign / verify and Encrypt0 encrypt / decrypt per second, one core.

What is measured
----------------
Each operation runs ``--operations`` times in a tight loop, ``--repeats``
times; the median, min and max of operations per second are reported. One
thread, so the figures are per core. The machine may be shared: the load
average at the start and end is recorded beside the figures, and the median
is what to quote.

* **sign1 / verify1**: a detached 200-byte payload (the size of a typical
  envelope's end-to-end bytes) with a 10-byte kid and 16 bytes of external
  AAD, as gridmesh signs envelopes. ``cose_kid`` is the parse alone (what a
  receiver does first to pick the key); ``verify1`` parses again.
* **raw Ed25519 sign / verify** of the same ``Sig_structure``: the floor the
  COSE layer sits on, so the difference is the cost of CBOR and checks.
* **encrypt0 / decrypt0**: a 200-byte plaintext under A128GCM, A256GCM and
  ChaCha20/Poly1305, IVs from ``iv_from_counter``.

    .venv/bin/python bench/cose.py [--operations 5000] [--repeats 7]
        [--json bench/results/cose.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from _machine import machine as machine_info
from gridmesh import __version__
from gridmesh.security._cose import (
    ALG_A128GCM,
    ALG_A256GCM,
    ALG_CHACHA20_POLY1305,
    _sig_structure,
    cose_kid,
    decrypt0,
    encrypt0,
    iv_from_counter,
    sign1,
    verify1,
)

PAYLOAD_BYTES = 200
KID = b"meter-0042"
EXTERNAL_AAD = b"grid-7|tariffs.."
ALGORITHMS = {
    "A128GCM": ALG_A128GCM,
    "A256GCM": ALG_A256GCM,
    "ChaCha20/Poly1305": ALG_CHACHA20_POLY1305,
}


def rate(operation: Callable[[int], object], operations: int, repeats: int) -> dict[str, float]:
    """Operations per second over ``repeats`` timed loops (``operation`` gets the loop index)."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for index in range(operations):
            operation(index)
        rates.append(operations / (time.perf_counter() - started))
    return {
        "per_s_median": round(statistics.median(rates)),
        "per_s_min": round(min(rates)),
        "per_s_max": round(max(rates)),
        "us_median": round(1e6 / statistics.median(rates), 2),
    }


def measure(operations: int, repeats: int) -> dict[str, dict[str, float]]:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public_key = key.public_key()
    envelope = bytes(range(PAYLOAD_BYTES))
    message = sign1(None, key, kid=KID, external_aad=EXTERNAL_AAD, detached=envelope)
    protected = cbor2.loads(message)[0]
    to_be_signed = _sig_structure(protected, EXTERNAL_AAD, envelope)
    signature = key.sign(to_be_signed)
    results = {
        "sign1": rate(
            lambda _: sign1(None, key, kid=KID, external_aad=EXTERNAL_AAD, detached=envelope),
            operations,
            repeats,
        ),
        "verify1": rate(
            lambda _: verify1(message, public_key, external_aad=EXTERNAL_AAD, detached=envelope),
            operations,
            repeats,
        ),
        "cose_kid": rate(lambda _: cose_kid(message), operations, repeats),
        "ed25519_sign_raw": rate(lambda _: key.sign(to_be_signed), operations, repeats),
        "ed25519_verify_raw": rate(
            lambda _: public_key.verify(signature, to_be_signed), operations, repeats
        ),
    }
    base_iv = bytes(range(12))
    for name, alg in ALGORITHMS.items():
        aead_key = bytes(range(16 if alg == ALG_A128GCM else 32))
        sealed = encrypt0(envelope, aead_key, kid=KID, iv=base_iv, alg=alg)
        results[f"encrypt0_{name}"] = rate(
            lambda index, aead_key=aead_key, alg=alg: encrypt0(
                envelope, aead_key, kid=KID, iv=iv_from_counter(base_iv, index), alg=alg
            ),
            operations,
            repeats,
        )
        results[f"decrypt0_{name}"] = rate(
            lambda _, sealed=sealed, aead_key=aead_key, alg=alg: decrypt0(
                sealed, aead_key, alg=alg
            ),
            operations,
            repeats,
        )
    results["sign1"]["message_bytes"] = len(message)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--operations", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=Path("bench/results/cose.json"))
    args = parser.parse_args()
    load = os.getloadavg()
    machine = machine_info()
    print(f"{machine['python']} on {machine['platform']}")
    print(f"{machine['cpu']}, {machine['cpus']} CPUs, load average at start {load[0]:.2f}")
    print(f"{args.operations:,} operations x {args.repeats} repeats, one thread\n")
    results = measure(args.operations, args.repeats)
    for name, figures in results.items():
        print(
            f"  {name:<28} {figures['per_s_median']:>9,.0f}/s median "
            f"({figures['per_s_min']:,.0f}..{figures['per_s_max']:,.0f}), "
            f"{figures['us_median']:.1f} us"
        )
    report = {
        "benchmark": "cose",
        "version": __version__,
        "command": f"bench/cose.py --operations {args.operations} --repeats {args.repeats}",
        "payload_bytes": PAYLOAD_BYTES,
        "machine": machine,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
