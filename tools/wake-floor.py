#!/usr/bin/env python3
"""The host's wake-up floor: how often a thread that sleeps 100 us wakes more than 1 ms late.

Not a test. Forwarding-delay percentiles on a VM include the host's own stalls (vCPUs not
run, timers delivered late); this measures them with nothing of silentmon running, so a
bench's tail can be read against the floor of the same hour. Usage: tools/wake-floor.py [SECONDS]
"""
import sys
import time


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    nap = 0.0001
    end = time.perf_counter() + seconds
    sleeps, late = 0, []
    while time.perf_counter() < end:
        t = time.perf_counter()
        time.sleep(nap)
        over = time.perf_counter() - t - nap
        sleeps += 1
        if over > 0.001:
            late.append(over)
    worst = max(late, default=0.0) * 1000
    over2 = sum(1 for x in late if x > 0.002)
    print(
        f"host wake-up floor over {seconds:.0f} s: {sleeps} sleeps of 100 us, "
        f"{len(late) / seconds:.1f}/s woke > 1 ms late, {over2 / seconds:.1f}/s > 2 ms, "
        f"worst {worst:.1f} ms"
    )


if __name__ == "__main__":
    main()
