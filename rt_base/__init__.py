"""Floor 1 of mindeye-rt: what every other package may use and that uses nothing of theirs.

- :mod:`rt_base.errors` — the one exception hierarchy;
- :mod:`rt_base.checks` — argument checks whose messages name argument, rule, value, remedy;
- :mod:`rt_base.atomic` — whole-or-nothing file writes;
- :mod:`rt_base.hashing` — content hashes and cache keys;
- :mod:`rt_base.names` — the names shared across packages (stages, timestamp keys, spans);
- :mod:`rt_base.debug` — the one switch that makes background errors re-raise (tests).
"""
