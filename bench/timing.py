"""What the benchmark scripts share: the percentile every figure is reported by, and timing console pages."""

from __future__ import annotations


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank, no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def time_console_pages(app, email: str, password: str, cases, repeat: int):
    """Sign in to the console as `email` with a test client, then time each `(label, path)` of `cases` `repeat`
    times after one warm-up request; yields (label, median ms, p95 ms, last response)."""
    import re
    import statistics
    import time

    client = app.test_client()
    token = re.search(rb'name="csrf-token" content="([^"]+)"', client.get("/auth").data).group(1).decode()
    signed_in = client.post("/auth", data={"email": email, "password": password, "csrf_token": token})
    assert signed_in.status_code == 302, signed_in.status_code
    for label, path in cases:
        client.get(path)  # warm caches (templates, statements)
        samples = []
        for _ in range(repeat):
            began = time.perf_counter()
            response = client.get(path)
            samples.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        yield label, statistics.median(samples), percentile(samples, 0.95), response
