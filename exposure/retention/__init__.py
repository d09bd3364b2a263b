"""Purpose-limited retention: what each kind of data is for, when it goes, and the proof.

- :mod:`exposure.retention.policy`: a declaration per stored kind of data (purpose, the field
  its age is measured from, deadline with floor and ceiling, the job that enforces it).
- :mod:`exposure.retention.settings`: the deadlines operators may move, within the floors.
- :mod:`exposure.retention.log`: the append-only, hash-chained, Ed25519-signed retention log.
- :mod:`exposure.retention.purge`: one purge run over a service's policies, logged entry by entry.
- :mod:`exposure.retention.compliance`: what an auditor asks: is anything held past its deadline,
  did every scheduled purge run on time, does the log verify.

Each service declares its own policies (``keyserver.retention``, ``verification.retention``);
the app factory and the CLI compose them with the core ones here, so ``exposure`` never
imports a service.
"""
