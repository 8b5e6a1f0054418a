"""What the per-key request-rate limit (api/rate_limit.py) costs the API's hottest route.

    python bench/rate_limit_overhead.py [--quick] [--rounds N] [--pollers N] [--seconds S]

Two real API processes on this machine, one Redis, no worker: one counts every request of its key
(rate_limit_per_minute and rate_limit_burst set so high that nothing is refused, so each request pays
the count in Redis and nothing else changes), the other has the limit off. In each
round `--pollers` clients poll GET /v1/jobs/{id} as fast as they are answered for `--seconds` on each
API in turn, the order alternating between rounds, so drift of the machine's speed hits both sides.

Last line `ratio=<polls per second without the limit / with it>`: 1.0 means the limit is free; 1.25 would
mean a quarter more requests served without it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import api_load  # noqa: E402  (the minimal HTTP client and the job spec)

COUNTED = {"TRAINYARD_RATE_LIMIT_PER_MINUTE": str(10**8), "TRAINYARD_RATE_LIMIT_BURST": str(10**6)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 rounds of 2 s")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--pollers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=None)
    return parser.parse_args()


async def polls_per_second(port: int, path: str, pollers: int, seconds: float) -> float:
    stop, latencies = asyncio.Event(), []
    tasks = [asyncio.create_task(api_load.poll(port, path, stop, latencies)) for _ in range(pollers)]
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    stop.set()
    errors = sum(await asyncio.gather(*tasks))
    if errors:
        raise RuntimeError(f"{errors} polls were not answered 200")
    return len(latencies) / (time.perf_counter() - started)


def main() -> None:
    args = parse_args()
    from tests.live_stack import LiveStack
    from trainyard.services import start_private_redis

    rounds = args.rounds or (4 if args.quick else 10)
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    tmp = Path(tempfile.mkdtemp(prefix="trainyard-bench-"))
    redis_server = start_private_redis(tmp / "redis")
    stacks: dict[str, LiveStack] = {}
    try:
        for name, rate in (("limited", COUNTED), ("unlimited", api_load.UNLIMITED_RATE)):
            home = tmp / name
            home.mkdir()
            database, settings = f"sqlite:///{home / 'trainyard.db'}", {"TRAINYARD_DEVICE": "cpu", **rate}
            stacks[name] = stack = LiveStack(home, database, redis_server.url, settings)
            stack.start_api()
        # A queued job (there is no worker): its answer is what a dashboard polls, from the API's cache.
        paths = {name: f"/v1/jobs/{live.submit(api_load.job_spec(1))['id']}" for name, live in stacks.items()}
        rates: dict[str, list[float]] = {name: [] for name in stacks}
        for round_number in range(rounds + 1):  # round 0 warms both up and is not counted
            order = list(stacks) if round_number % 2 else list(reversed(stacks))
            for name in order:
                api_load.AUTH = f"Authorization: Bearer {stacks[name].api_key}\r\n"
                rate = asyncio.run(polls_per_second(stacks[name].port, paths[name], args.pollers, seconds))
                if round_number:
                    rates[name].append(rate)
    finally:
        for stack in stacks.values():
            stack.stop()
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    limited, unlimited = statistics.median(rates["limited"]), statistics.median(rates["unlimited"])
    print(f"{args.pollers} pollers, {rounds} rounds of {seconds:g} s on each API, GET /v1/jobs/{{id}}")
    for name, label in (("limited", "with the limit counted"), ("unlimited", "without it")):
        each = ", ".join(f"{rate:.0f}" for rate in rates[name])
        print(f"polls/s {label}: median {statistics.median(rates[name]):.0f} ({each})")
    print(f"ratio={unlimited / limited:.3f}")


if __name__ == "__main__":
    main()
