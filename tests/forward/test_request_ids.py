"""Request ids are random, unique and stay so across a fork."""

import os
import re

from proxy.handler import new_request_id


def test_ids_are_sixteen_hex_digits_and_do_not_repeat():
    """Thousands of ids (several random batches) are well formed and all different."""
    ids = [new_request_id() for _ in range(5000)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_repeat_its_parents_next_ids():
    """The child reads fresh random bytes instead of the batch the parent had left."""
    new_request_id()  # make sure the parent holds a partly used batch
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read)
        os.write(write, ",".join(new_request_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode().split(",")
    os.close(read)
    os.waitpid(pid, 0)
    parent = [new_request_id() for _ in range(4)]
    assert set(child).isdisjoint(parent)
