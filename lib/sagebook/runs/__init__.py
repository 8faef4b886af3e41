"""What the team sees of the record store, as queries that return data and the terminal's text
of them:

    lookup.py    which store, which run, a record's files read within bounds   (L4 queries)
    listing.py   filters, `--where`, sort, columns, costs                      (L4 queries)
    details.py   one run, its metrics and annotations; two runs' differences   (L4 queries)
    text.py      every terminal table and line of them                         (L6 presentation)

Re-running a record is rerun.py's (orchestration: it launches).
"""
