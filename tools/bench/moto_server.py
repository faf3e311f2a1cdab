"""The project's SQS-compatible server (moto), with two speed fixes, for `make bench`.

moto 5.2 does work proportional to the queue's length in most calls: every
SendMessage, and every message a ReceiveMessage returns (its retention check),
computes all of the queue's attributes, i.e. three scans of every message for
the Approximate* counts, and each message's visibility check reads the clock
through `moto.core.utils.unix_time_millis`, which builds two datetime objects.
With a 2,000-message backlog a SendMessageBatch took ~0.5 s and a receive of 10
~0.1 s here: the server, not the service under test, set the pace (the backlog
took 83 s to enqueue and drained at ~11 messages/s). This launcher, before
starting the unchanged server:

1. swaps in an equivalent clock (`time.time()`: the same UTC epoch milliseconds);
2. lets the three ApproximateNumberOfMessages* counts be reused for 50 ms
   (SQS itself documents them as approximate and eventually consistent).

Nothing else changes: receive, visibility, delete, redrive and delay semantics
are moto's own.

usage: moto_server.py -H 127.0.0.1 -p PORT   (the arguments of moto_server)
"""

import sys
import time

import moto.core.utils as utils
import moto.sqs.models as sqs_models
from moto.server import main

_unix_time = utils.unix_time


def unix_time_millis(dt=None):
    if dt is None:
        return time.time() * 1000.0
    return _unix_time(dt) * 1000.0


utils.unix_time_millis = unix_time_millis
sqs_models.unix_time_millis = unix_time_millis

COUNT_TTL_S = 0.05


def _reused_for_a_while(prop, slot):
    def get(self):
        now = time.monotonic()
        cached = self.__dict__.get(slot)
        if cached is not None and now - cached[0] < COUNT_TTL_S:
            return cached[1]
        value = prop.fget(self)
        self.__dict__[slot] = (now, value)
        return value

    return property(get)


for _name in (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
):
    setattr(
        sqs_models.Queue,
        _name,
        _reused_for_a_while(getattr(sqs_models.Queue, _name), "_bench_" + _name),
    )

if __name__ == "__main__":
    sys.exit(main())
