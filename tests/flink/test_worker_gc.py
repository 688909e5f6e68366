"""flink.udfs.freeze_survivors_of_full_collections, in a fresh interpreter (it changes the process's collector).

What survives a full collection must leave the next full collections' walk (gc.freeze), so a Python worker's
full collections cost what changed since the last one, not the whole card cache; objects must still be
freed by reference counting."""

from __future__ import annotations

import json
import subprocess
import sys

from flink.config import PROJECT_ROOT

SCRIPT = """
import gc, json, weakref
from flink.udfs import freeze_survivors_of_full_collections

freeze_survivors_of_full_collections()
freeze_survivors_of_full_collections()  # a second UDF in the same worker: nothing more
at_open = gc.get_freeze_count()
cards = {i: [i, str(i)] for i in range(50_000)}  # a cache that grows between collections
gc.collect()
after_full = gc.get_freeze_count()

class Card: pass
card = Card(); gone = weakref.ref(card); gc.collect(); del card  # frozen, then dropped
print(json.dumps({"at_open": at_open, "after_full": after_full, "callbacks": len(gc.callbacks),
                  "freed": gone() is None}))
"""


def test_full_collections_freeze_their_survivors_which_refcounting_still_frees():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["at_open"] > 10_000  # the interpreter and its imports, frozen at open
    assert result["after_full"] >= result["at_open"] + 50_000  # the cache's lists, frozen by the full collection
    assert result["callbacks"] == 1
    assert result["freed"]
